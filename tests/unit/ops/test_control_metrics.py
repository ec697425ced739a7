"""The rollout controller's GET /metrics: the registry's and the rollouts' series (issue 22).

A real SQLite registry goes through register, promote, reject and a canary rollout; each scrape
of the collector (and of the controller's health server) must show the stage versions, the
latest rollout's weight, phase and failed checks, and the ledger's counts and times.
"""

from __future__ import annotations

import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from metarec import metrics_contract as contract
from metarec.cli.rollout import _health_server
from metarec.config import load_settings
from metarec.ops import register_candidate, start_canary
from metarec.ops.control_metrics import control_metrics, control_metrics_registry
from metarec.registry import Action, Registry, VersionRef
from metarec.registry.db import create_registry_engine
from metarec.rollout import Phase, RolloutSpec
from metarec.rollout.store import RolloutStore
from metarec.testing.registry import register_fixture, write_fixture_artifact
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

CONTROL_SERIES = {
    contract.PRODUCTION_VERSION,
    contract.STAGING_VERSION,
    contract.CANARY_WEIGHT,
    contract.ROLLOUT_PHASE,
    contract.ROLLOUT_FAILED_CHECKS,
    contract.REGISTRY_EVENTS,
    contract.REGISTRY_LAST_EVENT,
    contract.LAST_TRAINING,
    contract.REGISTRY_READ_ERROR,
}


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    """(sample name, labels) → value of an exposition."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if not s.name.endswith("_created")
    }


def value(found: dict, name: str, **labels: str) -> float | None:
    return found.get((name, frozenset(labels.items())))


@pytest.fixture
def settings(tmp_path: Path):
    return load_settings(home=tmp_path / "home", registry={"export_bentoml": False})


@pytest.fixture
def registry(settings):
    with Registry.open(settings) as opened:
        yield opened


@pytest.fixture
def loop(settings, registry, tmp_path):
    """v1 in production, v2 in staging at 25 % of a progressing rollout, a rejected candidate."""
    register_fixture(registry, tmp_path / "a1", seed=1)
    register_fixture(registry, tmp_path / "a2", seed=2)
    registry.promote(VersionRef(model="metarec", version=1), actor="t", reason="r")
    state = start_canary(
        settings,
        ref=VersionRef(model="metarec", version=2),
        spec=RolloutSpec(steps=(25, 100)),
        actor="t",
        registry=registry,
    )
    register_candidate(
        settings,
        artifact=write_fixture_artifact(tmp_path / "bad", seed=3, mae=0.99),
        model="metarec",
        policy=None,
        training_set=None,
        actor="cron",
        registry=registry,
    )
    store = RolloutStore(engine=registry.engine)
    progressing = {"phase": Phase.PROGRESSING, "canary_weight": 25, "failed_checks": 1}
    return store, store.save(state.model_copy(update=progressing))


def scrape(registry: Registry) -> dict:
    return samples(generate_latest(control_metrics_registry(registry.engine)).decode())


def test_a_scrape_shows_versions_rollout_and_ledger(registry, loop):
    found = scrape(registry)
    assert {name for name, _ in found} == CONTROL_SERIES
    assert value(found, contract.PRODUCTION_VERSION, model="metarec") == 1
    assert value(found, contract.STAGING_VERSION, model="metarec") == 2
    assert value(found, contract.CANARY_WEIGHT, model="metarec", version="2") == 25
    assert value(found, contract.ROLLOUT_FAILED_CHECKS, model="metarec", version="2") == 1
    phases = {
        dict(labels)["phase"]: v for (name, labels), v in found.items()
        if name == contract.ROLLOUT_PHASE
    }  # fmt: skip
    assert phases == {p.value: float(p is Phase.PROGRESSING) for p in Phase}
    counts = {a: value(found, contract.REGISTRY_EVENTS, model="metarec", action=a) for a in Action}
    assert counts == {
        Action.REGISTER: 2,
        Action.PROMOTE: 1,
        Action.REJECT: 1,
        Action.ROLLBACK: 0,
        Action.ARCHIVE: 0,
    }
    history = registry.history("metarec")
    for action in Action:
        times = [e.created_at.timestamp() for e in history if e.action is action]
        last = value(found, contract.REGISTRY_LAST_EVENT, model="metarec", action=action)
        assert last == (max(times) if times else None), action
    v2 = registry.get_version(VersionRef(model="metarec", version=2))
    assert value(found, contract.LAST_TRAINING, model="metarec") == v2.created_at.timestamp()
    assert value(found, contract.REGISTRY_READ_ERROR) == 0


def test_an_ended_rollout_shows_weight_0_and_its_phase(registry, loop):
    store, state = loop
    store.save(state.model_copy(update={"phase": Phase.SUCCEEDED, "canary_weight": 100}))
    registry.promote(VersionRef(model="metarec", version=2), actor="t", reason="canary passed")
    found = scrape(registry)
    assert value(found, contract.CANARY_WEIGHT, model="metarec", version="2") == 0
    assert value(found, contract.ROLLOUT_PHASE, model="metarec", version="2", phase="Succeeded")
    assert value(found, contract.PRODUCTION_VERSION, model="metarec") == 2
    assert value(found, contract.STAGING_VERSION, model="metarec") is None  # none left
    assert value(found, contract.REGISTRY_EVENTS, model="metarec", action="promote") == 2


def test_a_model_never_rolled_out_has_weight_0_and_no_phase(registry, tmp_path):
    register_fixture(registry, tmp_path / "a1", seed=1)
    found = scrape(registry)
    assert value(found, contract.CANARY_WEIGHT, model="metarec", version="") == 0
    assert not [name for name, _ in found if name == contract.ROLLOUT_PHASE]
    assert value(found, contract.PRODUCTION_VERSION, model="metarec") is None
    assert value(found, contract.REGISTRY_EVENTS, model="metarec", action="register") == 1


def test_an_unreadable_registry_is_a_read_error_not_a_failed_scrape(tmp_path):
    engine = create_registry_engine(f"sqlite:///{tmp_path / 'empty.db'}")  # no tables
    try:
        found = samples(generate_latest(control_metrics_registry(engine)).decode())
    finally:
        engine.dispose()
    assert found == {(contract.REGISTRY_READ_ERROR, frozenset()): 1}


def get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status, answer.headers["content-type"], answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["content-type"], exc.read().decode()


def test_the_controller_health_port_serves_metrics_beside_the_probes(settings, loop):
    ready = threading.Event()
    with control_metrics(settings) as metrics:
        server = _health_server(0, ready, metrics)
        base = f"http://127.0.0.1:{server.server_address[1]}"
        try:
            status, kind, body = get(f"{base}/metrics")
            assert (get(f"{base}/healthz")[0], get(f"{base}/readyz")[0]) == (200, 503)
        finally:
            server.shutdown()
            server.server_close()
    assert status == 200 and kind.startswith("text/plain")
    found = samples(body)
    assert value(found, contract.PRODUCTION_VERSION, model="metarec") == 1
    assert value(found, contract.CANARY_WEIGHT, model="metarec", version="2") == 25
