"""Fixtures for the pure unit tests."""

from __future__ import annotations

from typing import Any

import pytest
from unit_helpers import SAMPLE_NODES, load_yaml_documents


@pytest.fixture
def example_nodes() -> list[dict[str, Any]]:
    (node_list,) = load_yaml_documents(SAMPLE_NODES)
    items: list[dict[str, Any]] = node_list["items"]
    return items
