"""llama.cpp in-process through xllamacpp: ``CommonParams`` + ``Server``.

``xllamacpp.Server`` loads the model and serves llama.cpp's own HTTP server (OpenAI API,
/health, /metrics) on the configured host and port, so clients talk straight to
llama.cpp with no proxy hop. The runtime stays in the same process to read llama.cpp's
log (fd 2) for diagnosis and to shut the server down on SIGTERM.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

from kubeinfer.fit import GpuDevice
from kubeinfer.runtime_config import RuntimeConfig

from ..gpu_layers import (
    FitFailed,
    GpuLayerChoice,
    GpuLayerDecision,
    Offloaded,
    choose,
    decide,
    gpus_from_device_info,
    needs_retry,
    read_layout,
    read_log_line,
    reported_layers,
)
from ..logs import get_logger
from ..readiness import local_url, wait_until_ready
from .flags import OwnParser, ParamError
from .llama_cpp_params import apply_params
from .runner import RunContext, handle_signals

log = get_logger("llama.cpp")
_MODEL_LOADED = "init: model loaded"  # llama.cpp's server, at every verbosity


def check(config: RuntimeConfig) -> None:
    """Validate the params on a throwaway CommonParams: bad keys fail before any I/O."""
    import xllamacpp

    apply_params(xllamacpp.CommonParams(), config.params)


def own_parser() -> OwnParser:
    """No parser: params are CommonParams fields, listed from a fresh CommonParams."""
    import xllamacpp

    source = f"xllamacpp {version('xllamacpp')}: CommonParams fields"
    return OwnParser(source, xllamacpp.CommonParams())


def fields(config: RuntimeConfig, model_file: Path) -> dict[str, Any]:
    """The CommonParams fields a start sets, checked, without reading the model.

    ``n_gpu_layers``, when not given, is left to llama.cpp's fit at start (or estimated
    from the GGUF and the GPUs where the fit is off or fails).
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
    """CommonParams from the config, with ``n_gpu_layers`` as the user gave it (or unset)."""
    import xllamacpp

    params = xllamacpp.CommonParams()
    apply_params(params, config.params)
    params.model.path = str(model_file)
    params.model_alias = {config.model.name}
    params.hostnames = [config.server.host]
    params.port = config.server.port
    params.endpoint_metrics = True
    return params


def gpu_layer_choice(
    config: RuntimeConfig, params: Any, model_file: Path, gpus: list[GpuDevice], fit_failed: bool
) -> GpuLayerChoice:
    def estimate() -> GpuLayerDecision:
        return decide(
            read_layout(model_file),
            gpus,
            n_ctx=params.n_ctx,
            kv_cache_type=params.cache_type_k.name.removeprefix("GGML_TYPE_").lower(),
            flash_attn=params.flash_attn_type.name.endswith("ENABLED"),
        )

    return choose(
        config.params.get("n_gpu_layers"),
        # An older xllamacpp has no fit_params; the user may have turned it off.
        fit_available=bool(getattr(params, "fit_params", False)),
        fit_failed=fit_failed,
        gpus=len(gpus),
        estimate=estimate,
    )


def apply_gpu_layers(params: Any, choice: GpuLayerChoice, gpus: int, verbosity_given: bool) -> None:
    if choice.source == "user":
        return  # already set from the params, fit_params as the user left it
    if choice.n_gpu_layers is None:
        # The fit's choice is only seen in llama.cpp's log ("offloaded N/M layers to GPU"),
        # printed at verbosity 4; without GPUs there is nothing to read.
        if gpus and not verbosity_given and params.verbosity < 4:
            params.verbosity = 4
        return
    params.n_gpu_layers = choice.n_gpu_layers
    if hasattr(params, "fit_params"):
        params.fit_params = False  # -1 ("all") would otherwise mean the fit again
    if choice.tensor_split:
        params.tensor_split = list(choice.tensor_split) + [0.0] * (
            len(params.tensor_split) - len(choice.tensor_split)
        )


@dataclass
class LayerLog:
    """What llama.cpp's log says about the layers, read as the engine's output passes."""

    offloaded: Offloaded | None = None
    fit_failed: FitFailed | None = None
    loaded: threading.Event = field(default_factory=threading.Event)

    def feed(self, line: str) -> None:
        match read_log_line(line):
            case Offloaded() as seen:
                self.offloaded = seen
            case FitFailed() as seen:
                self.fit_failed = seen
        if _MODEL_LOADED in line:
            self.loaded.set()


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

    path = model_file(model_path, config.model.file)
    gpus = gpus_from_device_info(xllamacpp.get_device_info())
    url = local_url(config.server.host, config.server.port)
    stop = threading.Event()
    layer_log = LayerLog()
    fit_failed = False
    with (
        handle_signals(lambda *_: stop.set()),
        ctx.engine_output_on_stderr(lambda line: layer_log.feed(line)),
    ):
        while True:
            params = build_params(config, path)
            choice = gpu_layer_choice(config, params, path, gpus, fit_failed)
            apply_gpu_layers(params, choice, len(gpus), "verbosity" in config.params)
            log.info("n_gpu_layers (%s): %s", choice.source, choice.reason)
            layer_log = LayerLog()
            try:
                server = xllamacpp.Server(params)
            except Exception as err:  # the engine's own reason is in its log, diagnosed or not
                if needs_retry(choice, started=False, fit_failed=False, gpus=len(gpus)):
                    log.warning(
                        "llama.cpp failed to start with its fit (%s); next: the estimate", err
                    )
                    fit_failed = True
                    continue
                ctx.engine_failed(f"llama.cpp failed to start: {err}")
                return 1
            ready = wait_until_ready(url, alive=lambda: not stop.is_set())
            layer_log.loaded.wait(timeout=2)  # the load's lines pass the reader a bit later
            if layer_log.fit_failed and choice.source == "fit":
                fit_failed = True
                log.warning("llama.cpp's fit failed: %s", layer_log.fit_failed.why)
                if needs_retry(choice, started=True, fit_failed=True, gpus=len(gpus)):
                    log.warning("starting llama.cpp again with the estimate")
                    del server
                    continue
                choice = gpu_layer_choice(config, params, path, gpus, fit_failed)
                log.info("n_gpu_layers (%s): %s", choice.source, choice.reason)
            break
        try:
            layers = reported_layers(choice, layer_log.offloaded, len(gpus))
            ctx.metrics.set_gpu_layers(choice.source, layers)
            of = f" of {layer_log.offloaded.of}" if layer_log.offloaded else ""
            where = "" if gpus else " (no GPU devices)"
            log.info(
                "n_gpu_layers (%s): %d%s layers on the GPU%s", choice.source, layers, of, where
            )
            if ready:
                ctx.mark_ready()
            stop.wait()
            log.info("stopping llama.cpp")
        finally:
            del server  # the destructor stops the HTTP server and the decode loop
    return 0
