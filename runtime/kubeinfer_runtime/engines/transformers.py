"""transformers: the library's own ``transformers serve MODEL`` (transformers[serving]).

transformers 5.24's server has /v1/chat/completions, /v1/completions, /v1/models and
/health, but no Prometheus /metrics: for this engine only the runtime's own metrics port
has metrics. It also has no served-name option: the pinned model's id is the very string
it was started with, and requests must name it. So the child runs in a scratch folder
where ``<model.name>`` links to the model, and is started with that name.
"""

from __future__ import annotations

import importlib
import tempfile
from importlib.metadata import version
from pathlib import Path

from kubeinfer.runtime_config import RuntimeConfig

from .flags import OwnParser, ParamError, to_flags


def command(config: RuntimeConfig, model_path: str) -> list[str]:
    params = {"log_level": "info", **config.params}
    return [
        "transformers",
        "serve",
        config.model.name,
        "--host",
        config.server.host,
        "--port",
        str(config.server.port),
        *to_flags("transformers", params),
    ]


def workdir(config: RuntimeConfig, model_path: Path) -> Path:
    """A folder in which ``config.model.name`` is a link to the model."""
    name = Path(config.model.name)
    if name.is_absolute() or ".." in name.parts:
        raise ParamError(f"model.name {config.model.name!r} must be a relative name")
    root = Path(tempfile.mkdtemp(prefix="kubeinfer-transformers-"))
    link = root / name
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(model_path.resolve(), target_is_directory=True)
    return root


def own_parser() -> OwnParser:
    """``transformers serve``: a click command of the library's CLI (huggingface_hub's)."""
    app = importlib.import_module("transformers.cli.transformers").app
    source = f"transformers {version('transformers')}: transformers serve (typer/click)"
    return OwnParser(source, app.commands["serve"])
