"""The runtime's one sequence: check params, serve metrics, fetch the model, run the engine.

Parameters are checked first so that a bad key fails before anything listens or
downloads; the termination message carries the reason either way.
"""

from __future__ import annotations

import json
import signal
from typing import Any, TextIO

from kubeinfer.runtime_config import RuntimeConfig

from .engines import LAUNCHERS
from .engines.flags import ParamError
from .engines.runner import RunContext, handle_signals
from .logs import get_logger
from .metrics import RuntimeMetrics
from .model_source import ModelSourceError, local_path, resolve
from .readiness import local_url
from .termination import write_termination_message
from .watch import EngineWatcher

log = get_logger("app")

EXIT_CONFIG = 2  # bad parameters: argparse's code for usage errors
EXIT_MODEL = 3  # the model cannot be found or fetched


def run(config: RuntimeConfig) -> int:
    launcher = LAUNCHERS[config.engine]
    try:
        launcher.check(config)
    except ParamError as err:
        return _fail(config, EXIT_CONFIG, str(err), "fix spec.engineParams")

    metrics = RuntimeMetrics()
    metrics.engine.info({"engine": config.engine, "model": config.model.name})
    metrics.serve(config.server.host, config.server.metrics_port)
    log.info(
        "engine %s, model %s (%s), serving on %s:%d, runtime metrics on :%d",
        config.engine,
        config.model.name,
        config.model.uri,
        config.server.host,
        config.server.port,
        config.server.metrics_port,
    )
    try:
        model_path = resolve(config.model, metrics)
    except ModelSourceError as err:
        return _fail(config, EXIT_MODEL, str(err), "fix spec.model or the model volume")

    ctx = RunContext(
        metrics=metrics,
        watcher=EngineWatcher(metrics, config.termination_message_path),
        health_url=local_url(config.server.host, config.server.port),
    )
    try:
        return launcher.run(config, model_path, ctx)
    except ParamError as err:
        return _fail(config, EXIT_CONFIG, str(err), "fix spec.engineParams or spec.model")


def fetch(config: RuntimeConfig) -> int:
    """Only fetch the model (the operator's download Job, which fills a shared cache). As a
    pod's PID 1 it gets no default SIGTERM handling: stopping is explicit, so a deleted Job's
    pod ends at once (what is on the volume stays, and the next run continues from it)."""
    try:
        with handle_signals(_stop):
            path = resolve(config.model, RuntimeMetrics())
    except ModelSourceError as err:
        return _fail(config, EXIT_MODEL, str(err), "fix spec.model or spec.env")
    log.info("the model is in %s", path)
    return 0


def _stop(signum: int, _frame: Any) -> None:
    log.info("%s: stopping the fetch", signal.Signals(signum).name)
    raise SystemExit(128 + signum)


def print_command(config: RuntimeConfig, out: TextIO) -> int:
    """Print what ``run`` would start as one JSON line; start, fetch and write nothing."""
    try:
        shown = LAUNCHERS[config.engine].show(config, local_path(config.model))
    except ParamError as err:
        log.error("%s — fix spec.engineParams", err)
        return EXIT_CONFIG
    except ModelSourceError as err:
        log.error("%s — fix spec.model", err)
        return EXIT_MODEL
    out.write(json.dumps(shown) + "\n")
    return 0


def _fail(config: RuntimeConfig, code: int, what: str, remedy: str) -> int:
    message = f"{what} — {remedy}"
    log.error("%s", message)
    write_termination_message(config.termination_message_path, message)
    return code
