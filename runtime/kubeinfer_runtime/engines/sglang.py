"""SGLang: ``python -m sglang.launch_server`` (OpenAI server, /health, /metrics on one port)."""

from __future__ import annotations

import sys

from kubeinfer.runtime_config import RuntimeConfig

from .flags import served_as, to_flags


def command(config: RuntimeConfig, model_path: str) -> list[str]:
    params = dict(config.params)
    params.setdefault("enable_metrics", True)  # Prometheus /metrics is off by default
    return [
        sys.executable,
        "-m",
        "sglang.launch_server",
        "--model-path",
        model_path,
        *served_as(config),
        *to_flags("sglang", params),
    ]
