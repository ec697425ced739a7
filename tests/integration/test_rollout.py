"""Canary rollouts end to end: real HTTP services, a real router, real traffic, real registry.

The services are the test-side stand-ins of ``tests/integration/rollout_backend.py`` (the
adaptation service's HTTP contract and Prometheus metrics, with fault injection), behind the real
:class:`LocalWeightedRouter`; the controller scrapes their ``/metrics`` and writes the real
registry (SQLite). A bounded load loop (request count and deadline) drives traffic.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
from metarec.registry import Action, Registry, Stage, VersionRef
from metarec.rollout import Phase, RolloutSpec
from metarec.rollout.controller import RolloutController, start_rollout
from metarec.rollout.metrics import ScrapeMetricSource
from metarec.rollout.routers import LocalWeightedRouter, Weights
from metarec.rollout.store import RolloutStore
from metarec.testing.registry import register_fixture

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _load_backend():
    path = Path(__file__).resolve().parent / "rollout_backend.py"
    spec = importlib.util.spec_from_file_location("metarec_rollout_test_backend", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


backend = _load_backend()

SPEC = RolloutSpec(
    steps=(10, 50, 100),
    interval_s=1.0,
    max_error_rate=0.01,
    max_p99_ms=300,
    max_online_mae_delta=0.3,
    failure_threshold=2,
    min_requests=20,
    min_feedback=10,
)


@pytest.fixture
def registry(tmp_path: Path):
    registry = Registry.connect(
        url=f"sqlite:///{tmp_path / 'registry.db'}", artifact_root=str(tmp_path / "artifacts")
    )
    v1 = register_fixture(registry, tmp_path / "a1", seed=1)
    registry.promote(
        VersionRef(model="metarec", version=v1.version), actor="test", reason="first production"
    )
    register_fixture(registry, tmp_path / "a2", seed=2, mae=0.77)
    yield registry
    registry.close()


def run_rollout(registry: Registry, canary_faults: dict, spec: RolloutSpec = SPEC):
    production = backend.FakeService(model_version="metarec:v1").start()
    canary = backend.FakeService(model_version="metarec:v2", **canary_faults).start()
    router = LocalWeightedRouter(production_url=production.url, canary_url=canary.url, seed=0)
    router.start()
    store = RolloutStore(engine=registry.engine)
    controller = RolloutController(
        registry=registry,
        store=store,
        router=router,
        metrics=ScrapeMetricSource(production_url=production.url, canary_url=canary.url),
        actor="test-controller",
    )
    load = backend.LoadLoop(url=router.url, max_requests=20_000, deadline_s=60).start()
    try:
        state = start_rollout(
            registry=registry,
            store=store,
            ref=VersionRef(model="metarec", version=2),
            spec=spec,
            actor="test",
        )
        final = controller.run_until_done(state.id, poll_s=0.2, timeout_s=45)
        weights_after = router.weights()
    finally:
        outcomes = load.stop()
        router.stop()
        production.stop()
        canary.stop()
    return final, weights_after, outcomes, load, store


def assert_no_production_failure_and_nothing_lost(outcomes, load):
    assert outcomes, "the load loop sent nothing"
    lost = [o for o in outcomes if o.error is not None or o.status is None]
    assert lost == [], f"{len(lost)} requests lost: {lost[:3]}"
    assert len(outcomes) == 2 * load._sent  # every request got an answer
    production_failures = [o for o in outcomes if o.backend == "production" and o.status != 200]
    assert production_failures == []
    assert {o.backend for o in outcomes} <= {"production", "canary"}


def test_healthy_canary_is_promoted_with_its_verdict_in_the_ledger(registry: Registry):
    final, weights, outcomes, load, _store = run_rollout(registry, {})
    assert final.phase is Phase.SUCCEEDED, final.message
    assert registry.production("metarec").version == 2
    assert registry.get_version(VersionRef(model="metarec", version=1)).stage is Stage.ARCHIVED
    entry = registry.history("metarec")[-1]
    assert entry.action is Action.PROMOTE and entry.version == 2
    verdict = entry.evidence["canary_verdict"]
    assert verdict["status"] == "passed" and verdict["rollout_id"] == final.id
    passed = [w for w in verdict["windows"] if w["result"] == "passed"]
    assert [w["canary_weight"] for w in passed] == [10, 50, 100]
    for window in passed:
        checks = {c["name"]: c for c in window["checks"]}
        assert checks["error_rate"]["value"] == 0.0 and checks["error_rate"]["threshold"] == 0.01
        assert 0 < checks["latency_p99_ms"]["value"] <= 300
        assert abs(checks["online_mae_delta"]["value"]) < 1e-6  # same predictions as production
        assert window["metrics"]["canary"]["requests"] >= SPEC.min_requests
    assert weights == Weights(production=0, canary=100)
    assert_no_production_failure_and_nothing_lost(outcomes, load)
    assert sum(o.backend == "canary" for o in outcomes) > 0


def _assert_rolled_back(registry, final, weights, store, failing_check):
    assert final.phase is Phase.FAILED, final.message
    assert weights == Weights(production=100, canary=0)
    assert registry.production("metarec").version == 1
    assert registry.get_version(VersionRef(model="metarec", version=2)).stage is Stage.STAGING
    assert final.verdict.status == "failed"
    events = store.events(final.id)
    analysed = [e for e in events if e.checks is not None]
    # Rolled back within the failure threshold: exactly `failure_threshold` failed windows.
    assert [e.action for e in analysed if e.action in ("retry", "checks_failed")] == [
        "retry",
        "checks_failed",
    ]
    last = {c["name"]: c for c in analysed[-1].checks}
    assert not last[failing_check]["passed"]
    assert failing_check in final.verdict.reason
    assert events[-1].action == "failed" and events[-1].canary_weight == 0
    # Never promoted: the registry ledger has no promotion of v2.
    assert not [
        e for e in registry.history("metarec") if e.version == 2 and e.action is Action.PROMOTE
    ]


def test_canary_with_20_percent_5xx_is_rolled_back(registry: Registry):
    final, weights, outcomes, load, store = run_rollout(registry, {"error_every": 5})
    _assert_rolled_back(registry, final, weights, store, "error_rate")
    rate = next(c for c in final.verdict.final_checks if c.name == "error_rate").value
    assert 0.15 < rate < 0.3
    assert_no_production_failure_and_nothing_lost(outcomes, load)
    assert any(o.backend == "canary" and o.status == 500 for o in outcomes)


def test_slow_canary_is_rolled_back(registry: Registry):
    final, weights, outcomes, load, store = run_rollout(registry, {"latency_s": 0.5})
    _assert_rolled_back(registry, final, weights, store, "latency_p99_ms")
    p99 = next(c for c in final.verdict.final_checks if c.name == "latency_p99_ms").value
    assert p99 > 300
    assert_no_production_failure_and_nothing_lost(outcomes, load)


def test_canary_with_bad_predictions_is_rolled_back(registry: Registry):
    final, weights, outcomes, load, store = run_rollout(registry, {"bias": 1.5})
    _assert_rolled_back(registry, final, weights, store, "online_mae_delta")
    delta = next(c for c in final.verdict.final_checks if c.name == "online_mae_delta")
    assert delta.value == pytest.approx(1.0, abs=0.05)  # |t+1.5-t| − |t+0.5-t|
    assert_no_production_failure_and_nothing_lost(outcomes, load)
