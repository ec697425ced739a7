"""`metarec quickstart`, twice, on a fresh home: bootstrap, then a canary that promotes v2.

Synthetic data, a small training config (workflows.training_config) and a permissive gate policy
(registry.gate_policy) keep it short; everything else is what a new user runs: real Feast, Great
Expectations, training, registry, two real `bentoml serve` processes, router and traffic.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from metarec.cli.main import run
from metarec.config import load_settings
from metarec.registry import Action, Registry

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_quickstart_bootstraps_then_canaries_a_new_version(quickstart_home, capsys):
    home = quickstart_home

    assert run(["quickstart", "--source", "synthetic", "--user", "3"]) == 0
    first = capsys.readouterr().out
    print(first)
    assert "metarec:v1 is in production (first version: nothing to canary against)" in first
    assert "Top 5 for user 3" in first
    for report in ("validation (HTML)", "evaluation (PNG)"):
        path = re.search(rf"Report, {re.escape(report)}: (\S+)", first)[1]
        assert Path(path).is_file()

    # Shorter canary windows than the default 10 s (each still holds ~50 canary predictions).
    second_run = ["quickstart", "--source", "synthetic", "--user", "3", "--canary-interval", "5"]
    assert run(second_run) == 0
    second = capsys.readouterr().out
    print(second)
    assert "Meta-train fomaml (seed 1)" in second
    assert "metarec:v2 promoted to production after a canary over 25 %, 50 %, 100 %" in second
    assert "0 server errors" in second
    timeline = Path(re.search(r"Report, rollout timeline \(HTML\): (\S+)", second)[1])
    assert timeline.is_file()

    settings = load_settings(home=home)
    with Registry.open(settings) as registry:
        assert registry.production_version("metarec") == 2
        history = registry.history("metarec")
    promotion = [e for e in history if e.version == 2 and e.action is Action.PROMOTE][-1]
    assert promotion.evidence["canary_verdict"]["status"] == "passed"
    assert promotion.actor.startswith("quickstart")
