"""``kubeinfer-runtime`` and ``python -m kubeinfer_runtime``."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from . import app, cli
from .logs import setup_logging


def main(argv: Sequence[str] | None = None) -> int:
    setup_logging()
    return app.run(cli.parse(argv))


if __name__ == "__main__":
    sys.exit(main())
