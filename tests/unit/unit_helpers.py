"""Shared helpers for the pure unit tests (no cluster, no engine)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
GOLDEN = Path(__file__).resolve().parent / "golden"
# The Kubernetes version the project pins (hack/controlplane/versions.env); kubernetes-validate
# ships schemas for exactly this minor version.
KUBERNETES_VERSION = "1.35"


def load_yaml_documents(path: Path) -> list[Any]:
    with path.open() as f:
        return [doc for doc in yaml.safe_load_all(f) if doc is not None]
