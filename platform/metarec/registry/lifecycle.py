"""Stage transitions: promote, roll back and archive, each one transaction with its ledger.

Promotions are compare-and-set: the caller states (or the registry observes before the
transaction starts) which version is in production; if another promotion changed it in the
meantime the loser gets :class:`~metarec.errors.RegistryConflictError`. Every stage move is
itself compare-and-set on the version's stage, and a partial unique index makes two production
versions of one model impossible.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Final

from sqlalchemy import CursorResult, select, update
from sqlalchemy.orm import Session

from metarec.errors import InvalidTransitionError, RegistryConflictError, VersionNotFoundError
from metarec.registry import ledger, rows
from metarec.registry.ledger import Entry
from metarec.registry.queries import production_version
from metarec.registry.schema import LedgerRow, ModelRow, VersionRow
from metarec.registry.sessions import Sessions
from metarec.registry.types import Action, Stage, VersionRef


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Final = _Unset()
Expected = int | _Unset | None


def promote(
    db: Sessions,
    ref: VersionRef,
    *,
    actor: str,
    reason: str,
    evidence: dict[str, Any] | None = None,
    expected_production: Expected = UNSET,
) -> None:
    """Make ``ref`` the production version; the previous one is archived atomically.

    Raises:
        RegistryConflictError: Production changed concurrently.
        InvalidTransitionError: The version is already in production, or no reason is given.
        VersionNotFoundError / ModelNotFoundError: No such version.
    """
    require_reason(reason)
    expected = _observed(db, ref.model, expected_production)
    with db.write(f"promoting {ref.tag}") as session:
        model_row = rows.model_row(session, ref.model, lock=True)
        row = rows.version_row(session, model_row, ref.version)
        make_production(
            db,
            session,
            model_row,
            row,
            _entry(Action.PROMOTE, row, Stage.PRODUCTION, actor, reason, evidence or {}),
            expected=expected,
        )


def rollback(
    db: Sessions,
    model: str,
    *,
    actor: str,
    reason: str,
    evidence: dict[str, Any] | None = None,
    expected_production: Expected = UNSET,
) -> int:
    """Promote the previous production version again (the current one is archived).

    Returns:
        The number of the version now in production.

    Raises:
        VersionNotFoundError: There is no earlier production version to return to.
        RegistryConflictError: Production changed concurrently.
    """
    require_reason(reason)
    expected = _observed(db, model, expected_production)
    with db.write(f"rolling back {model}") as session:
        model_row = rows.model_row(session, model, lock=True)
        current = rows.production_row(session, model_row)
        previous = _previous_production(session, model_row, current)
        rolled_back_from = None if current is None else f"{model}:v{current.version}"
        make_production(
            db,
            session,
            model_row,
            previous,
            _entry(
                Action.ROLLBACK,
                previous,
                Stage.PRODUCTION,
                actor,
                reason,
                {"rolled_back_from": rolled_back_from, **(evidence or {})},
            ),
            expected=expected,
        )
        return previous.version


def archive(
    db: Sessions,
    ref: VersionRef,
    *,
    actor: str,
    reason: str,
    evidence: dict[str, Any] | None = None,
) -> None:
    """Archive a staging or production version (archiving production leaves none).

    Raises:
        InvalidTransitionError: The version is already archived, or no reason is given.
    """
    require_reason(reason)
    with db.write(f"archiving {ref.tag}") as session:
        model_row = rows.model_row(session, ref.model, lock=True)
        row = rows.version_row(session, model_row, ref.version)
        if row.stage == Stage.ARCHIVED.value:
            raise InvalidTransitionError(
                f"{ref.tag} is already archived.",
                fix="nothing to do; promote it to bring it back.",
            )
        entry = _entry(Action.ARCHIVE, row, Stage.ARCHIVED, actor, reason, evidence or {})
        transition(
            db,
            session,
            model_row,
            row,
            entry,
            operation_id=ledger.new_operation_id(),
            step="version-archived",
        )
        db.step("ledger-written")


def make_production(
    db: Sessions,
    session: Session,
    model_row: ModelRow,
    row: VersionRow,
    entry: Entry,
    *,
    expected: int | None,
) -> None:
    """Archive the current production version (if any) and move ``row`` to production.

    Args:
        db: The registry's sessions (for the step hook).
        session: The mutation's transaction (the model row is locked).
        model_row: The model.
        row: The version to put in production.
        entry: The ledger entry of the move (promote or rollback) of ``row``.
        expected: The production version the caller expects (None: none).

    Raises:
        InvalidTransitionError: ``row`` is already in production.
        RegistryConflictError: Production is not ``expected``, or changed concurrently.
    """
    tag = f"{model_row.name}:v{row.version}"
    current = rows.production_row(session, model_row)
    _check_production(row, current, expected=expected, tag=tag, action=entry.action)
    operation_id = ledger.new_operation_id()
    if current is not None:
        replaced = _entry(
            Action.ARCHIVE,
            current,
            Stage.ARCHIVED,
            entry.actor,
            f"replaced by {tag} ({entry.action.value}): {entry.reason}",
            {"replaced_by": tag},
        )
        transition(
            db,
            session,
            model_row,
            current,
            replaced,
            operation_id=operation_id,
            step="previous-archived",
            doing=f"{entry.action.value} {tag}",
        )
    previous = None if current is None else f"{model_row.name}:v{current.version}"
    promoted = replace(entry, evidence={"previous_production": previous, **entry.evidence})
    transition(
        db, session, model_row, row, promoted, operation_id=operation_id, step="version-promoted"
    )
    db.step("ledger-written")


def _check_production(
    row: VersionRow, current: VersionRow | None, *, expected: int | None, tag: str, action: Action
) -> None:
    """Refuse to put ``row`` in production when it is there, or production is not ``expected``.

    Raises:
        InvalidTransitionError: ``row`` is already in production.
        RegistryConflictError: The production version is not ``expected``.
    """
    if row.stage == Stage.PRODUCTION.value:
        raise InvalidTransitionError(
            f"{tag} is already the production version.",
            fix="nothing to do; `metarec models list` shows the stages.",
        )
    found = None if current is None else current.version
    if found != expected:
        raise RegistryConflictError(
            f"Cannot {action.value} {tag}: production changed while this request ran "
            f"(expected {_fmt(expected)} in production, found {_fmt(found)}).",
            fix="check `metarec models list` and `history`, then retry if still wanted.",
        )


def transition(
    db: Sessions,
    session: Session,
    model_row: ModelRow,
    row: VersionRow,
    entry: Entry,
    *,
    operation_id: str,
    step: str,
    doing: str | None = None,
) -> None:
    """Move ``row`` from ``entry.from_stage`` to ``entry.to_stage`` and append ``entry``.

    Args:
        db: The registry's sessions (the step hook is called with ``step`` after the move).
        session: The mutation's transaction.
        model_row: The model.
        row: The version to move.
        entry: The ledger entry of the move.
        operation_id: The operation the entry belongs to.
        step: The step name reported once the stage moved.
        doing: The operation named when the move conflicts (default: the entry's action).

    Raises:
        RegistryConflictError: The version was no longer in ``entry.from_stage``.
    """
    assert entry.from_stage is not None and entry.to_stage is not None
    tag = f"{model_row.name}:v{row.version}"
    if doing is None:
        conflict = f"Cannot {entry.action.value} {tag}: its stage changed concurrently."
    else:
        conflict = f"Cannot {doing}: {tag} left {entry.from_stage.value} concurrently."
    move_stage(
        session, row, from_stage=entry.from_stage, to_stage=entry.to_stage, conflict=conflict
    )
    db.step(step)
    ledger.append(session, entry, model=model_row, version=row, operation_id=operation_id)


def move_stage(
    session: Session, row: VersionRow, *, from_stage: Stage, to_stage: Stage, conflict: str
) -> None:
    """Compare-and-set a version's stage; a concurrent change raises ``conflict``.

    Raises:
        RegistryConflictError: The version was no longer in ``from_stage``.
    """
    result: CursorResult[Any] = session.execute(  # type: ignore[assignment]
        update(VersionRow)
        .where(VersionRow.id == row.id, VersionRow.stage == from_stage.value)
        .values(stage=to_stage.value)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        raise RegistryConflictError(
            conflict, fix="check `metarec models list`, then retry if still wanted."
        )


def require_reason(reason: str) -> None:
    """Refuse a stage transition without a reason (the ledger keeps it).

    Raises:
        InvalidTransitionError: ``reason`` is empty or blank.
    """
    if not reason or not reason.strip():
        raise InvalidTransitionError(
            "A stage transition needs a reason.", fix="pass --reason '…' (kept in the ledger)."
        )


def _entry(
    action: Action,
    row: VersionRow,
    to_stage: Stage,
    actor: str,
    reason: str,
    evidence: dict[str, Any],
) -> Entry:
    """The ledger entry of moving ``row`` from its current stage to ``to_stage``."""
    return Entry(
        action=action,
        from_stage=Stage(row.stage),
        to_stage=to_stage,
        actor=actor,
        reason=reason,
        evidence=evidence,
    )


def _previous_production(
    session: Session, model_row: ModelRow, current: VersionRow | None
) -> VersionRow:
    """The most recent earlier production version that is archived now.

    Raises:
        VersionNotFoundError: There is none.
    """
    entries = session.scalars(
        select(LedgerRow)
        .where(LedgerRow.model_id == model_row.id, LedgerRow.to_stage == Stage.PRODUCTION.value)
        .order_by(LedgerRow.id.desc())
    )
    for entry in entries:
        if current is not None and entry.version_id == current.id:
            continue
        candidate = session.get(VersionRow, entry.version_id)
        if candidate is not None and candidate.stage == Stage.ARCHIVED.value:
            return candidate
    raise VersionNotFoundError(
        f"Model {model_row.name!r} has no previous production version to roll back to.",
        fix="promote a specific version with `metarec models promote VERSION`.",
    )


def _observed(db: Sessions, model: str, expected: Expected) -> int | None:
    """The expected production version: as given, or observed now when not given."""
    return production_version(db, model) if isinstance(expected, _Unset) else expected


def _fmt(version: int | None) -> str:
    return "none" if version is None else f"v{version}"
