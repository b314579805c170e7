"""MLX: ``mlx_lm.server`` (Apple silicon; OpenAI chat and completions, /health)."""

from __future__ import annotations

from kubeinfer.runtime_config import RuntimeConfig

from .flags import to_flags


def command(config: RuntimeConfig, model_path: str) -> list[str]:
    return [
        "mlx_lm.server",
        "--model",
        model_path,
        "--host",
        config.server.host,
        "--port",
        str(config.server.port),
        *to_flags("mlx", config.params),
    ]
