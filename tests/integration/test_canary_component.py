"""The canary_rollout component's paths that need no service: bootstrap, idempotence, refusal.

The canary proper (two real services, router, generated traffic) runs in
tests/e2e/test_retrain_flow.py.
"""

from __future__ import annotations

import pytest
from metarec.components.canary_rollout import BOOTSTRAP_REASON, canary_rollout
from metarec.errors import RolloutError, RolloutFailedError
from metarec.registry import Action, Registry, Stage, VersionRef
from metarec.rollout.store import RolloutStore
from metarec.rollout.types import Phase, RolloutSpec
from metarec.testing.registry import register_fixture

pytestmark = pytest.mark.integration


def test_first_version_is_promoted_directly_and_the_ledger_says_why(settings, tmp_path):
    with Registry.open(settings) as registry:
        v1 = register_fixture(registry, tmp_path / "a1", seed=1)
    out = canary_rollout(version=v1.version, home=str(settings.paths.home))
    assert out.outcome == "bootstrapped" and out.promoted
    assert (out.production_before, out.production_after) == (None, v1.version)
    assert out.rollout_id is None and out.report_html is None
    with Registry.open(settings) as registry:
        assert registry.production_version(v1.model) == v1.version
        last = registry.history(v1.model)[-1]
    assert last.action is Action.PROMOTE and last.reason == BOOTSTRAP_REASON

    again = canary_rollout(version=v1.version, home=str(settings.paths.home))
    assert again.outcome == "already-production" and not again.promoted
    with Registry.open(settings) as registry:
        assert registry.history(v1.model)[-1] == last  # nothing written twice


def test_an_archived_version_is_refused_with_the_fix(settings, tmp_path):
    with Registry.open(settings) as registry:
        v1 = register_fixture(registry, tmp_path / "a1", seed=1)
        v2 = register_fixture(registry, tmp_path / "a2", seed=2)
        registry.promote(VersionRef(model=v1.model, version=v1.version), actor="t", reason="r")
        registry.archive(VersionRef(model=v2.model, version=v2.version), actor="t", reason="r")
    with pytest.raises(RolloutError, match="only a staging version can be rolled out"):
        canary_rollout(version=v2.version, home=str(settings.paths.home))


def test_a_retried_task_resumes_the_active_rollout_instead_of_starting_another(
    settings, tmp_path, monkeypatch
):
    with Registry.open(settings) as registry:
        v1 = register_fixture(registry, tmp_path / "a1", seed=1)
        v2 = register_fixture(registry, tmp_path / "a2", seed=2)
        registry.promote(VersionRef(model=v1.model, version=v1.version), actor="t", reason="r")
        store = RolloutStore(engine=registry.engine)
        active = store.create(
            model=v2.model,
            version=v2.version,
            production_version=v1.version,
            spec=RolloutSpec(),
            actor="t",
        )
    seen = {}

    def fake_local_run(settings_, *, state, **_kwargs):
        # Stands in for the services + controller: it records which rollout it was given
        # and ends it as the controller would on a failed canary.
        seen["id"] = state.id
        with Registry.open(settings_) as registry:
            final = RolloutStore(engine=registry.engine).save(
                state.model_copy(update={"phase": Phase.FAILED, "message": "error rate 0.2"})
            )
        return type("Result", (), {"state": final, "traffic": None})()

    monkeypatch.setattr("metarec.ops.local_canary.run_local_canary", fake_local_run)
    with pytest.raises(
        RolloutFailedError, match=r"was not promoted \(rolled-back\): error rate 0\.2"
    ):
        canary_rollout(version=v2.version, home=str(settings.paths.home), generate_traffic=False)
    assert seen["id"] == active.id
    with Registry.open(settings) as registry:
        assert registry.get_version(VersionRef(model=v2.model, version=v2.version)).stage is (
            Stage.STAGING
        )
        assert registry.production_version(v1.model) == v1.version
        assert len(RolloutStore(engine=registry.engine).active(v2.model)) == 0
