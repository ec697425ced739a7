"""Fixtures shared by the rollout unit tests."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from metarec.registry import Registry, VersionRef
from metarec.testing.registry import register_fixture

# Lets tests here import their sibling helpers (test_controller).
sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture
def registry(tmp_path: Path):
    """A registry with v1 in production and v2 in staging."""
    registry = Registry.connect(
        url=f"sqlite:///{tmp_path / 'r.db'}", artifact_root=str(tmp_path / "artifacts")
    )
    register_fixture(registry, tmp_path / "a1", seed=1)
    registry.promote(VersionRef(model="metarec", version=1), actor="t", reason="first")
    register_fixture(registry, tmp_path / "a2", seed=2, mae=0.77)
    yield registry
    registry.close()
