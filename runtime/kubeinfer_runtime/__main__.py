"""``kubeinfer-runtime`` and ``python -m kubeinfer_runtime``."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from . import app, cli
from .logs import setup_logging


def main(argv: Sequence[str] | None = None) -> int:
    setup_logging()
    invocation = cli.invocation(argv)
    if invocation.print_command:
        return app.print_command(invocation.config, sys.stdout)
    if invocation.fetch_only:
        return app.fetch(invocation.config)
    return app.run(invocation.config)


if __name__ == "__main__":
    sys.exit(main())
