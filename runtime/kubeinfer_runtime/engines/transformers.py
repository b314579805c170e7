"""transformers: the library's own ``transformers serve MODEL`` (transformers[serving]).

transformers 5.24's server has /v1/chat/completions, /v1/completions, /v1/models and
/health, but no Prometheus /metrics: for this engine only the runtime's own metrics port
has metrics.
"""

from __future__ import annotations

from kubeinfer.runtime_config import RuntimeConfig

from .flags import reserved, to_flags

RESERVED = {"force_model", "host", "port"}


def command(config: RuntimeConfig, model_path: str) -> list[str]:
    reserved(config.params, RESERVED, "transformers")
    params = {"log_level": "info", **config.params}
    return [
        "transformers",
        "serve",
        model_path,
        "--host",
        config.server.host,
        "--port",
        str(config.server.port),
        *to_flags(params),
    ]
