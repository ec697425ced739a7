"""Canary use cases: the spec from typed options, starting a rollout, releasing a version.

The canary proper (two real services, the local router, generated traffic) runs in
tests/e2e/test_retrain_flow.py; here the paths that need no service run on a real registry.
"""

from pathlib import Path

import pytest
from metarec.config import load_settings
from metarec.errors import ConfigError, RolloutConflictError, RolloutError
from metarec.ops import (
    BOOTSTRAP_REASON,
    parse_duration,
    parse_steps,
    release_canary,
    rollout_spec,
    start_canary,
)
from metarec.ops.canary import EVENT_HIT_RATE_DROP, spec_for_versions
from metarec.ops.local_canary import LocalCanaryResult, local_rollout_settings
from metarec.registry import Action, Registry, Stage, VersionRef
from metarec.rollout.store import RolloutStore
from metarec.rollout.types import Phase, RolloutSpec
from metarec.router_config import LocalRouterConfig
from metarec.testing.registry import register_fixture


@pytest.fixture
def settings(tmp_path: Path):
    return load_settings(home=tmp_path / "home", registry={"export_bentoml": False})


@pytest.fixture
def staged(settings, tmp_path):
    """v1 in production, v2 in staging."""
    with Registry.open(settings) as registry:
        register_fixture(registry, tmp_path / "a1", seed=1)
        register_fixture(registry, tmp_path / "a2", seed=2)
        registry.promote(VersionRef(model="metarec", version=1), actor="t", reason="r")
    return VersionRef(model="metarec", version=2)


def test_durations_and_steps_are_read_as_people_write_them():
    assert [parse_duration(t) for t in ("30s", "2m", "500ms", "1h", "45")] == [
        30.0,
        120.0,
        0.5,
        3600.0,
        45.0,
    ]
    assert parse_steps("10, 25,50,100") == (10, 25, 50, 100)
    with pytest.raises(ConfigError, match="not a positive duration"):
        parse_duration("soon")
    with pytest.raises(ConfigError, match="not a list of percentages"):
        parse_steps("10,half")


def test_rollout_spec_keeps_defaults_for_unset_options_and_names_a_bad_one():
    spec = rollout_spec(steps="25,100", interval="5s", max_p99_ms=None, min_requests=7)
    assert (spec.steps, spec.interval_s, spec.min_requests) == ((25, 100), 5.0, 7)
    assert spec.max_p99_ms is None and spec.max_error_rate == RolloutSpec().max_error_rate
    with pytest.raises(ConfigError, match="Invalid rollout option max_error_rate"):
        rollout_spec(max_error_rate=2.0)


def test_start_canary_creates_one_rollout_and_resumes_it_on_request(settings, staged):
    state = start_canary(settings, ref=staged, spec=RolloutSpec(), actor="alice")
    assert (state.model, state.version, state.production_version) == ("metarec", 2, 1)
    assert state.phase is Phase.INITIALIZING
    with pytest.raises(RolloutConflictError):
        start_canary(settings, ref=staged, spec=RolloutSpec(), actor="alice")
    again = start_canary(settings, ref=staged, spec=RolloutSpec(), actor="alice", resume=True)
    assert again.id == state.id


def test_start_canary_refuses_a_version_that_is_not_in_staging(settings, staged):
    with pytest.raises(RolloutError, match="only a staging version can be rolled out"):
        start_canary(
            settings, ref=VersionRef(model="metarec", version=1), spec=RolloutSpec(), actor="a"
        )


def test_release_promotes_the_first_version_directly_then_leaves_it(settings, tmp_path):
    with Registry.open(settings) as registry:
        v1 = register_fixture(registry, tmp_path / "a1", seed=1)
    ref = VersionRef(model=v1.model, version=v1.version)
    first = release_canary(settings, ref=ref, spec=RolloutSpec(), actor="pipeline")
    assert (first.outcome, first.promoted, first.state) == ("bootstrapped", True, None)
    assert (first.production_before, first.production_after) == (None, 1)
    again = release_canary(settings, ref=ref, spec=RolloutSpec(), actor="pipeline")
    assert (again.outcome, again.promoted) == ("already-production", False)
    with Registry.open(settings) as registry:
        promotions = [e for e in registry.history("metarec") if e.action is Action.PROMOTE]
    assert [e.reason for e in promotions] == [BOOTSTRAP_REASON]


def test_release_runs_the_local_canary_and_reports_how_it_ended(settings, staged, monkeypatch):
    seen = {}

    def local_run(settings_, *, registry, store, state, rows, **_options):
        # Stands in for the two `bentoml serve` processes and the controller (the e2e test
        # runs them): it ends the rollout as the controller does when a canary fails.
        seen.update(rows=rows, id=state.id)
        failed = state.model_copy(update={"phase": Phase.FAILED, "message": "error rate 0.2"})
        return LocalCanaryResult(state=store.save(failed), traffic=None)

    monkeypatch.setattr("metarec.ops.local_canary.run_local_canary", local_run)
    outcome = release_canary(
        settings, ref=staged, spec=RolloutSpec(), actor="pipeline", rows=lambda: [(1, 2, 4.0)]
    )
    assert seen["rows"] == [(1, 2, 4.0)] and outcome.state.id == seen["id"]
    assert (outcome.outcome, outcome.reason, outcome.promoted) == (
        "rolled-back",
        "error rate 0.2",
        False,
    )
    assert (outcome.production_before, outcome.production_after) == (1, 1)
    assert outcome.online_mae == {"production": None, "canary": None}
    assert all(path.is_file() for path in outcome.reports.values())
    assert sorted(outcome.reports) == ["html", "png"]
    with Registry.open(settings) as registry:
        assert registry.get_version(staged).stage is Stage.STAGING
        assert RolloutStore(engine=registry.engine).active("metarec") == []


def test_a_local_canary_puts_the_local_router_on_a_free_port_in_front_of_its_services(tmp_path):
    services = {"production_url": "http://127.0.0.1:4000", "canary_url": "http://127.0.0.1:4001"}
    gateway = load_settings(home=tmp_path, rollout={"router": {"kind": "gateway-api"}})
    wired = local_rollout_settings(gateway, **services).rollout
    assert wired.router == LocalRouterConfig(listen_host="127.0.0.1", listen_port=0)
    assert (wired.production_url, wired.canary_url) == tuple(services.values())
    everywhere = load_settings(home=tmp_path, rollout={"router": {"listen_host": "0.0.0.0"}})
    wired = local_rollout_settings(everywhere, **services).rollout
    assert wired.router == LocalRouterConfig(listen_host="0.0.0.0", listen_port=0)


@pytest.fixture
def event_canary(settings, tmp_path):
    """v1 (ratings) in production, v2 (learnt from implicit events) in staging."""
    with Registry.open(settings) as registry:
        register_fixture(registry, tmp_path / "a1", seed=1)
        register_fixture(registry, tmp_path / "a2", seed=2, label="event")
        registry.promote(VersionRef(model="metarec", version=1), actor="t", reason="r")
    return VersionRef(model="metarec", version=2)


def test_an_event_canary_runs_with_the_online_mae_off_and_the_hit_rate_on(settings, event_canary):
    asked = RolloutSpec(max_online_mae_delta=0.25)
    state = start_canary(settings, ref=event_canary, spec=asked, actor="alice")
    assert state.spec.max_online_mae_delta is None
    assert state.spec.max_online_hit_rate_drop == EVENT_HIT_RATE_DROP == 0.05
    assert state.spec.notes == (
        "online MAE off: metarec:v2 learnt from implicit events",
        "online hit rate on: largest drop 0.05 (the default for versions of implicit events)",
    )
    assert (state.spec.steps, state.spec.min_requests) == (asked.steps, asked.min_requests)
    with Registry.open(settings) as registry:  # the stored spec: what a cluster's controller reads
        stored = RolloutStore(engine=registry.engine).get(state.id)
    assert stored.spec == state.spec


def test_an_event_production_turns_the_mae_off_and_keeps_the_drop_asked_for(settings, tmp_path):
    with Registry.open(settings) as registry:
        register_fixture(registry, tmp_path / "a1", seed=1, label="event")
        registry.promote(VersionRef(model="metarec", version=1), actor="t", reason="r")
        register_fixture(registry, tmp_path / "a2", seed=2, label="event")
        ref = VersionRef(model="metarec", version=2)
        asked = RolloutSpec(max_online_mae_delta=0.25, max_online_hit_rate_drop=0.1)
        spec = spec_for_versions(registry, ref, asked, production=1)
    assert (spec.max_online_mae_delta, spec.max_online_hit_rate_drop) == (None, 0.1)
    assert spec.notes == (
        "online MAE off: metarec:v2 and metarec:v1 learnt from implicit events",
        "online hit rate on: largest drop 0.1",
    )


def test_two_rating_versions_keep_the_spec_asked_for(settings, staged):
    asked = RolloutSpec(max_online_mae_delta=0.25)
    state = start_canary(settings, ref=staged, spec=asked, actor="alice")
    assert state.spec == asked and state.spec.notes == ()


def test_rollout_start_and_status_say_why_the_online_mae_is_off(
    settings, event_canary, monkeypatch, capsys
):
    from metarec.cli.main import run

    monkeypatch.setenv("METAREC_HOME", str(settings.paths.home))
    monkeypatch.setenv("METAREC_REGISTRY__EXPORT_BENTOML", "false")
    monkeypatch.setenv("COLUMNS", "200")
    assert run(["rollout", "start", "2", "--max-online-mae-delta", "0.3"]) == 0
    note = "note: online MAE off: metarec:v2 learnt from implicit events"
    assert note in capsys.readouterr().out
    assert run(["rollout", "status"]) == 0
    assert note in capsys.readouterr().out
