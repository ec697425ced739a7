"""Event kinds: the rollout's failed-checks event is not the registry's rollback.

Rows stored before issue 17 named that event ``"rollback"``; they must still read.
"""

from __future__ import annotations

from metarec.registry import Action as RegistryAction
from metarec.rollout import Action, Phase
from metarec.rollout.schema import RolloutEventRow
from metarec.rollout.store import RolloutStore
from metarec.rollout.types import LEGACY_CHECKS_FAILED, EventKind, VerdictWindow
from sqlalchemy.orm import Session
from test_controller import make


def test_no_rollout_name_says_rollback():
    assert "ROLLBACK" not in Action.__members__ and "ROLLBACK" not in EventKind.__members__
    assert RegistryAction.ROLLBACK.value == "rollback"  # the registry's: re-promote the previous
    assert Action.FAIL.value == "fail" and EventKind.CHECKS_FAILED.value == "checks_failed"


def test_the_legacy_value_reads_as_checks_failed():
    assert EventKind(LEGACY_CHECKS_FAILED) is EventKind.CHECKS_FAILED
    assert EventKind("checks_failed") is EventKind.CHECKS_FAILED
    window = VerdictWindow.model_validate(
        {"at": "2026-01-01T00:00:00Z", "step": 0, "canary_weight": 10, "result": "rollback"}
    )
    assert window.result is EventKind.CHECKS_FAILED


def test_a_stored_legacy_event_row_still_reads(registry):
    controller, store, _router, _metrics, clock, state = make(registry, errors=50)
    controller.reconcile(state.id)
    with Session(registry.engine) as session, session.begin():
        session.add(
            RolloutEventRow(
                rollout_id=state.id,
                at=clock(),
                phase=Phase.ROLLING_BACK.value,
                action=LEGACY_CHECKS_FAILED,
                step_index=0,
                production_weight=100,
                canary_weight=0,
                metrics=None,
                checks=[],
                message="stored before the rename",
            )
        )
    events = RolloutStore(engine=registry.engine).events(state.id)
    assert [e.action for e in events] == [EventKind.START, EventKind.CHECKS_FAILED]
    assert store.events(state.id)[-1].message == "stored before the rename"
