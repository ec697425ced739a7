"""Rollout persistence in the registry database: runs and their events."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator
from sqlalchemy import Engine, Select, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from metarec.clock import as_utc, utc_now
from metarec.errors import (
    RolloutConflictError,
    RolloutError,
    RolloutNotFoundError,
    RolloutStaleStateError,
)
from metarec.rollout.schema import RolloutEventRow, RolloutRow
from metarec.rollout.types import ACTIVE_PHASES, EventKind, Phase, RolloutSpec, RolloutState


class RolloutEvent(BaseModel):
    """One stored controller event (a row of the rollout's timeline)."""

    model_config = ConfigDict(from_attributes=True)  # read straight from a RolloutEventRow

    id: int
    at: datetime
    phase: Phase
    action: EventKind
    step_index: int
    production_weight: int
    canary_weight: int
    metrics: dict[str, Any] | None
    checks: list[dict[str, Any]] | None
    message: str

    @field_validator("at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        return as_utc(value)


class RolloutStore:
    """Reads and writes rollout state in the registry database.

    Saves are compare-and-set on ``revision`` (:meth:`save`). The database must be at the
    newest migration (open the :class:`~metarec.registry.Registry` first, or call
    :func:`metarec.registry.db.upgrade_database`).
    """

    def __init__(self, *, engine: Engine) -> None:
        """Wrap the registry engine.

        Args:
            engine: The registry database engine (``Registry.engine``).
        """
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    @contextmanager
    def _session(self) -> Iterator[Session]:
        try:
            with self._sessions() as session, session.begin():
                yield session
        except IntegrityError:
            raise
        except DBAPIError as exc:
            raise RolloutError(
                f"Rollout database error ({type(exc.orig).__name__}: "
                f"{str(exc.orig).splitlines()[0] if str(exc.orig) else 'no detail'}).",
                fix="check that the registry database is reachable and writable.",
            ) from exc

    def create(
        self,
        *,
        model: str,
        version: int,
        production_version: int | None,
        spec: RolloutSpec,
        actor: str,
    ) -> RolloutState:
        """Create a rollout in phase ``Initializing``.

        Raises:
            RolloutConflictError: Another rollout of ``model`` is active.
        """
        now = utc_now()
        row = RolloutRow(
            id=uuid.uuid4().hex,
            model=model,
            version=version,
            production_version=production_version,
            phase=Phase.INITIALIZING.value,
            spec=spec.model_dump(mode="json"),
            step_index=0,
            canary_weight=0,
            failed_checks=0,
            production_mae=None,
            abort_requested=False,
            window_started_at=None,
            verdict=None,
            message="created",
            actor=actor,
            created_at=now,
            updated_at=now,
            revision=0,
        )
        try:
            with self._session() as session:
                active = self._active_row(session, model)
                if active is not None:
                    raise self._conflict(model, active)
                session.add(row)
        except IntegrityError as exc:
            raise RolloutConflictError(
                f"Another rollout of {model} started at the same moment.",
                fix="see `metarec rollout status`; abort it first if this one should run.",
            ) from exc
        return _state(row)

    @staticmethod
    def _conflict(model: str, active: RolloutRow) -> RolloutConflictError:
        return RolloutConflictError(
            f"Rollout {active.id} of {model}:v{active.version} is still {active.phase}.",
            fix="wait for it (`metarec rollout status`) or stop it with `metarec rollout abort`.",
        )

    @staticmethod
    def _active_row(session: Session, model: str) -> RolloutRow | None:
        return session.scalar(_active_rows().where(RolloutRow.model == model))

    def get(self, rollout_id: str) -> RolloutState:
        """The rollout with ``rollout_id``.

        Raises:
            RolloutNotFoundError: No such rollout.
        """
        with self._session() as session:
            row = _found(
                session.get(RolloutRow, rollout_id),
                f"No rollout with id {rollout_id}.",
                fix="list rollouts with `metarec rollout status`.",
            )
            return _state(row)

    def active(self, model: str | None = None) -> list[RolloutState]:
        """Active (non-terminal) rollouts, oldest first; of ``model`` only when given."""
        with self._session() as session:
            query = _active_rows()
            if model is not None:
                query = query.where(RolloutRow.model == model)
            return [_state(row) for row in session.scalars(query.order_by(RolloutRow.created_at))]

    def latest(self, model: str) -> RolloutState | None:
        """The most recently created rollout of ``model`` (None: never rolled out)."""
        with self._session() as session:
            row = session.scalar(
                select(RolloutRow)
                .where(RolloutRow.model == model)
                .order_by(RolloutRow.created_at.desc())
                .limit(1)
            )
            return None if row is None else _state(row)

    def save(
        self,
        state: RolloutState,
        *,
        event: EventRecord | None = None,
        events: Sequence[EventRecord] = (),
    ) -> RolloutState:
        """Write the mutable fields of ``state`` if it is still at ``state.revision``.

        Compare-and-set: the row is updated only where its revision is the one ``state`` was
        read at, and the revision is bumped; a stale state is refused, never written over a
        newer one. An operator's abort request is sticky (a save never clears it).

        With ``event`` / ``events``, they are appended in the same transaction: a process
        killed between the two can never leave a state change without its timeline entries.

        Returns:
            The state as stored (its new revision).

        Raises:
            RolloutStaleStateError: The rollout changed since ``state`` was read.
            RolloutNotFoundError: The rollout is gone.
        """
        values: dict[str, Any] = {
            "phase": state.phase.value,
            "step_index": state.step_index,
            "canary_weight": state.canary_weight,
            "failed_checks": state.failed_checks,
            "production_mae": state.production_mae,
            "window_started_at": state.window_started_at,
            "verdict": None if state.verdict is None else state.verdict.model_dump(mode="json"),
            "message": state.message,
            "updated_at": utc_now(),
            "revision": RolloutRow.revision + 1,
        }
        if state.abort_requested:
            values["abort_requested"] = True
        with self._session() as session:
            result = session.execute(
                update(RolloutRow)
                .where(RolloutRow.id == state.id, RolloutRow.revision == state.revision)
                .values(**values)
                .execution_options(synchronize_session=False)
            )
            if result.rowcount != 1:
                raise _stale(session, state)
            for record in [*events, *([] if event is None else [event])]:
                session.add(_event_row(state, record))
            return _state(
                session.scalars(select(RolloutRow).where(RolloutRow.id == state.id)).one()
            )

    def request_abort(self, model: str) -> RolloutState:
        """Ask the controller to abort the active rollout of ``model``.

        Raises:
            RolloutNotFoundError: No rollout of ``model`` is active.
        """
        with self._session() as session:
            row = _found(
                self._active_row(session, model),
                f"No active rollout of {model}.",
                fix="see `metarec rollout status`; start one with `metarec rollout start`.",
            )
            # The revision is not bumped: the flag is sticky (no save clears it), so the
            # controller's in-flight step still saves and the next one aborts.
            row.abort_requested = True
            row.updated_at = utc_now()
            return _state(row)

    def add_event(self, state: RolloutState, event: EventRecord) -> None:
        """Append ``event`` to the rollout's timeline (its ``at``: default now)."""
        with self._session() as session:
            session.add(_event_row(state, event))

    def events(self, rollout_id: str) -> list[RolloutEvent]:
        """The rollout's events, oldest first."""
        with self._session() as session:
            rows = session.scalars(
                select(RolloutEventRow)
                .where(RolloutEventRow.rollout_id == rollout_id)
                .order_by(RolloutEventRow.id)
            )
            return [RolloutEvent.model_validate(row) for row in rows]


@dataclass(frozen=True)
class EventRecord:
    """One timeline entry to append (see :meth:`RolloutStore.add_event`)."""

    action: EventKind
    production_weight: int
    canary_weight: int
    metrics: dict[str, Any] | None = None
    checks: list[dict[str, Any]] | None = None
    message: str = ""
    at: datetime | None = None
    # The phase and step the event belongs to (default: those of the state saved with it).
    phase: Phase | None = None
    step_index: int | None = None


def _active_rows() -> Select[tuple[RolloutRow]]:
    """The query of the rollouts in a non-terminal phase."""
    return select(RolloutRow).where(RolloutRow.phase.in_([p.value for p in ACTIVE_PHASES]))


def _found(row: RolloutRow | None, problem: str, *, fix: str) -> RolloutRow:
    """``row``, or :class:`RolloutNotFoundError` saying ``problem`` and ``fix`` when None."""
    if row is None:
        raise RolloutNotFoundError(problem, fix=fix)
    return row


def _stale(session: Session, state: RolloutState) -> RolloutStaleStateError:
    """Why a compare-and-set save of ``state`` matched no row (gone, or changed meanwhile)."""
    row = _found(
        session.get(RolloutRow, state.id),
        f"Rollout {state.id} vanished from the database.",
        fix="start the rollout again with `metarec rollout start`.",
    )
    return RolloutStaleStateError(
        f"Rollout {state.id} changed since it was read (revision {state.revision}, now "
        f"{row.revision}, phase {row.phase}); the stale save was refused.",
        fix="read the rollout again (`metarec rollout status`) and retry; the controller does "
        "so on its next tick.",
    )


def _event_row(state: RolloutState, record: EventRecord) -> RolloutEventRow:
    phase = state.phase if record.phase is None else record.phase
    return RolloutEventRow(
        rollout_id=state.id,
        at=record.at or utc_now(),
        phase=Phase(phase).value,
        action=EventKind(record.action).value,
        step_index=state.step_index if record.step_index is None else record.step_index,
        production_weight=record.production_weight,
        canary_weight=record.canary_weight,
        metrics=record.metrics,
        checks=record.checks,
        message=record.message,
    )


def _state(row: RolloutRow) -> RolloutState:
    return RolloutState(
        id=row.id,
        model=row.model,
        version=row.version,
        production_version=row.production_version,
        spec=RolloutSpec.model_validate(row.spec),
        phase=Phase(row.phase),
        step_index=row.step_index,
        canary_weight=row.canary_weight,
        failed_checks=row.failed_checks,
        production_mae=row.production_mae,
        abort_requested=row.abort_requested,
        window_started_at=as_utc(row.window_started_at),
        verdict=row.verdict,
        message=row.message,
        created_at=as_utc(row.created_at),
        updated_at=as_utc(row.updated_at),
        revision=row.revision,
    )
