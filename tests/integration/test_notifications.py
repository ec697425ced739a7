"""Notifications end to end: a gate rejection and a rolled-back canary reach a local webhook.

The receiver is a real HTTP server on 127.0.0.1; the rollout runs through the canary use case
(``run_canary``: the controller with its end-of-rollout hook) on an in-memory router and a
metric source whose canary fails every window, so it rolls back in a few seconds.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from metarec.config import load_settings
from metarec.ops import register_candidate, run_canary, start_canary
from metarec.registry import Registry, VersionRef
from metarec.rollout import RolloutSpec, ServiceWindow, WindowMetrics
from metarec.rollout.routers import Weights
from metarec.testing.registry import register_fixture, write_fixture_artifact
from metarec.testing.webhooks import Receiver

pytestmark = pytest.mark.integration


class _Router:
    def __init__(self) -> None:
        self.current = Weights(production=100, canary=0)

    def set_weights(self, *, production: int, canary: int) -> None:
        self.current = Weights(production=production, canary=canary)

    def weights(self) -> Weights:
        return self.current

    def close(self) -> None:
        pass


class _FailingCanary:
    """Every window: the canary answers 30 % errors, production none."""

    def start_window(self, state) -> None:
        pass

    def read_window(self, state, *, window_s: float) -> WindowMetrics:
        return WindowMetrics(
            window_s=window_s,
            canary=ServiceWindow(requests=100, errors=30, p99_ms=10),
            production=ServiceWindow(requests=100, errors=0, p99_ms=10),
        )


@pytest.fixture
def receiver():
    with Receiver() as running:
        yield running


@pytest.fixture
def settings(tmp_path: Path, receiver: Receiver):
    return load_settings(
        home=tmp_path / "home",
        registry={"export_bentoml": False},
        rollout={"poll_s": 0.05},
        notifications={
            "webhooks": [
                {"url": f"{receiver.url}/json"},
                {"url": f"{receiver.url}/slack", "format": "slack", "events": ["rolled_back"]},
            ],
            "backoff_s": 0.05,
        },
    )


def test_a_gate_rejection_is_notified_with_the_reason_and_the_artifact(
    settings, tmp_path, receiver
):
    with Registry.open(settings) as registry:
        register_fixture(registry, tmp_path / "first", seed=1)
        registry.promote(VersionRef(model="metarec", version=1), actor="a", reason="r")
        bad = write_fixture_artifact(tmp_path / "bad", seed=2, mae=0.99)
        outcome = register_candidate(
            settings,
            artifact=bad,
            model="metarec",
            policy=None,
            training_set=None,
            actor="bob",
            registry=registry,
            links={"decision": "s3://bucket/run/gate_decision.json"},
        )
    assert not outcome.accepted
    [body] = receiver.bodies("/json")  # flushed before register_candidate returned
    assert body["kind"] == "gate_rejected" and body["model"] == "metarec"
    assert body["reason"] == outcome.decision.summary()
    assert "mae" in body["reason"]
    assert body["links"] == {
        "artifact": bad.resolve().as_uri(),
        "decision": "s3://bucket/run/gate_decision.json",
    }
    assert body["details"]["artifact_digest"] == outcome.decision.artifact_digest
    assert receiver.bodies("/slack") == []  # that receiver asked for rollbacks only


def test_a_rolled_back_canary_is_notified_with_version_reason_and_report_links(
    settings, tmp_path, receiver, monkeypatch
):
    with Registry.open(settings) as registry:
        register_fixture(registry, tmp_path / "a1", seed=1)
        register_fixture(registry, tmp_path / "a2", seed=2)
        registry.promote(VersionRef(model="metarec", version=1), actor="t", reason="r")
    monkeypatch.setattr("metarec.ops.canary.build_router", lambda _s: (_Router(), lambda: None))
    monkeypatch.setattr("metarec.ops.canary.build_metrics", lambda *_a, **_k: _FailingCanary())
    spec = RolloutSpec(steps=(50, 100), interval_s=0.1, min_requests=10, failure_threshold=2)
    state = start_canary(settings, ref=VersionRef(model="metarec", version=2), spec=spec, actor="t")
    final = run_canary(settings, rollout_id=state.id, actor="t")
    assert final.phase.value == "Failed"
    [body] = receiver.bodies("/json")
    assert (body["kind"], body["version"]) == ("rolled_back", 2)
    assert body["reason"] == final.message and "error" in body["reason"]
    assert body["details"]["rollout_id"] == state.id
    report = settings.paths.rollouts / state.id / "report.html"
    assert body["links"]["report_html"] == report.resolve().as_uri()
    assert report.is_file() and (report.parent / "report.png").is_file()
    [slack] = receiver.bodies("/slack")
    assert slack["text"].startswith("Canary rolled back: metarec:v2")


def test_flagger_verdicts_are_notified_from_the_webhook_path(settings, tmp_path, receiver):
    from metarec.ops.flagger import promote_canary, roll_back_canary, webhook_evidence

    with Registry.open(settings) as registry:
        for seed in (1, 2, 3):
            register_fixture(registry, tmp_path / f"a{seed}", seed=seed)
        registry.promote(VersionRef(model="metarec", version=1), actor="t", reason="r")
    for hook, version, phase in ((promote_canary, 2, "Succeeded"), (roll_back_canary, 3, "Failed")):
        payload = {
            "name": "metarec",
            "namespace": "ml",
            "phase": phase,
            "metadata": {"version": str(version)},
        }
        hook(
            settings,
            metadata=payload["metadata"],
            phase=phase,
            evidence=webhook_evidence(payload, hook="post-rollout"),
            actor="flagger",
        )
    promoted, rolled_back = receiver.bodies("/json")
    assert (promoted["kind"], promoted["version"]) == ("promoted", 2)
    assert (rolled_back["kind"], rolled_back["version"]) == ("rolled_back", 3)
    assert rolled_back["reason"] == "Flagger rolled back the canary (ml/metarec)"
    assert rolled_back["details"]["engine"] == "flagger"


def test_a_failed_retrain_is_notified_and_the_error_still_raised(settings, receiver, monkeypatch):
    from metarec.errors import FeatureStoreError
    from metarec.ops import retraining
    from metarec.training.config import TrainingConfig

    def fail(_settings):
        raise FeatureStoreError("Feast registry unreachable: connection refused", fix="start it")

    monkeypatch.setattr(retraining, "prepare_training_set", fail)
    with pytest.raises(FeatureStoreError):
        retraining.retrain(settings, config=TrainingConfig.build({}), actor="cron")
    [body] = receiver.bodies("/json")
    assert (body["kind"], body["model"], body["version"]) == ("retrain_failed", "metarec", None)
    assert body["reason"].startswith("Feast registry unreachable: connection refused")
