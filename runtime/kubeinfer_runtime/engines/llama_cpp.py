"""llama.cpp in-process through xllamacpp: ``CommonParams`` + ``Server``.

``xllamacpp.Server`` loads the model and serves llama.cpp's own HTTP server (OpenAI API,
/health, /metrics) on the configured host and port, so clients talk straight to
llama.cpp with no proxy hop. The runtime stays in the same process to read llama.cpp's
log (fd 2) for diagnosis and to shut the server down on SIGTERM.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from kubeinfer.runtime_config import RuntimeConfig

from ..gpu_layers import decide, gpus_from_device_info, read_layout
from ..logs import get_logger
from ..readiness import local_url, wait_until_ready
from .flags import ParamError
from .llama_cpp_params import apply_params
from .runner import RunContext, handle_signals

log = get_logger("llama.cpp")


def check(config: RuntimeConfig) -> None:
    """Validate the params on a throwaway CommonParams: bad keys fail before any I/O."""
    import xllamacpp

    apply_params(xllamacpp.CommonParams(), config.params)


def fields(config: RuntimeConfig, model_file: Path) -> dict[str, Any]:
    """The CommonParams fields a start sets, checked, without reading the model.

    ``n_gpu_layers``, when not given, is decided at start from the GGUF and the GPUs.
    """
    check(config)
    return {
        **config.params,
        "model.path": str(model_file),
        "model_alias": [config.model.name],
        "hostnames": [config.server.host],
        "port": config.server.port,
        "endpoint_metrics": True,
    }


def build_params(config: RuntimeConfig, model_file: Path) -> Any:
    import xllamacpp

    params = xllamacpp.CommonParams()
    apply_params(params, config.params)
    params.model.path = str(model_file)
    params.model_alias = {config.model.name}
    params.hostnames = [config.server.host]
    params.port = config.server.port
    params.endpoint_metrics = True
    if config.params.get("n_gpu_layers", -1) == -1:
        _auto_gpu_layers(params, model_file, xllamacpp.get_device_info())
    return params


def _auto_gpu_layers(params: Any, model_file: Path, devices: list[dict[str, Any]]) -> None:
    gpus = gpus_from_device_info(devices)
    if not gpus:
        log.info("n_gpu_layers: no GPU devices, every layer runs on the CPU (no estimate)")
        return
    decision = decide(
        read_layout(model_file),
        gpus,
        n_ctx=params.n_ctx,
        kv_cache_type=params.cache_type_k.name.removeprefix("GGML_TYPE_").lower(),
        flash_attn=params.flash_attn_type.name.endswith("ENABLED"),
    )
    params.n_gpu_layers = decision.n_gpu_layers
    if decision.tensor_split:
        params.tensor_split = list(decision.tensor_split) + [0.0] * (
            len(params.tensor_split) - len(decision.tensor_split)
        )
    log.info("n_gpu_layers=%d: %s", decision.n_gpu_layers, decision.reason)


def model_file(path: Path, wanted: str | None) -> Path:
    """llama.cpp loads one GGUF: the path itself, or the single .gguf in a folder."""
    if path.is_file():
        return path
    candidates = sorted(path.glob(wanted or "*.gguf"))
    if len(candidates) != 1:
        found = ", ".join(p.name for p in candidates) or "none"
        raise ParamError(f"expected one GGUF in {path} (found {found}); set model.file")
    return candidates[0]


def run(config: RuntimeConfig, model_path: Path, ctx: RunContext) -> int:
    import xllamacpp

    params = build_params(config, model_file(model_path, config.model.file))
    stop = threading.Event()
    with handle_signals(lambda *_: stop.set()), ctx.engine_output_on_stderr():
        try:
            server = xllamacpp.Server(params)
        except Exception as err:  # the engine's own reason is in its log, diagnosed or not
            ctx.engine_failed(f"llama.cpp failed to start: {err}")
            return 1
        try:
            ready = wait_until_ready(
                local_url(config.server.host, config.server.port),
                alive=lambda: not stop.is_set(),
            )
            if ready:
                ctx.mark_ready()
            stop.wait()
            log.info("stopping llama.cpp")
        finally:
            del server  # the destructor stops the HTTP server and the decode loop
    return 0
