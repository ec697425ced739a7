"""Fixtures of the end-to-end tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from metarec.testing.serving import PERMISSIVE_POLICY_WITH_RANKING, SMALL_CONFIG


@pytest.fixture
def quickstart_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A METAREC_HOME for the quickstart: a small training config and a permissive gate."""
    config = tmp_path / "training.yaml"
    config.write_text(yaml.safe_dump({**SMALL_CONFIG, "support_sizes": ["5", "all"]}))
    policy = tmp_path / "policy.yaml"
    policy.write_text(PERMISSIVE_POLICY_WITH_RANKING)
    home = tmp_path / "home"
    monkeypatch.setenv("METAREC_HOME", str(home))
    monkeypatch.setenv("METAREC_WORKFLOWS__TRAINING_CONFIG", str(config))
    monkeypatch.setenv("METAREC_REGISTRY__GATE_POLICY", str(policy))
    monkeypatch.setenv("COLUMNS", "200")
    return home
