"""The append-only ledger: one entry per registration, rejection and stage move.

Entries are only ever inserted (database triggers refuse ``UPDATE`` and ``DELETE``); the entries
of one operation (a promotion archives the previous production version) share an operation id.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from metarec.clock import as_utc, utc_now
from metarec.registry.schema import LedgerRow, ModelRow, VersionRow
from metarec.registry.types import Action, LedgerEntry, Stage


@dataclass(frozen=True, kw_only=True)
class Entry:
    """What one ledger entry records, beside the model and version it is about."""

    action: Action
    from_stage: Stage | None
    to_stage: Stage | None
    actor: str
    reason: str
    evidence: dict[str, Any] = field(default_factory=dict)


def new_operation_id() -> str:
    """A fresh operation id (shared by the entries of one operation)."""
    return uuid.uuid4().hex


def append(
    session: Session,
    entry: Entry,
    *,
    model: ModelRow,
    version: VersionRow | None,
    operation_id: str,
) -> None:
    """Insert one ledger entry in the session's transaction.

    Args:
        session: The mutation's transaction.
        entry: What happened.
        model: The model row it happened to.
        version: The version row (None: a rejection, which creates no version).
        operation_id: The operation the entry belongs to.
    """
    session.add(
        LedgerRow(
            operation_id=operation_id,
            model_id=model.id,
            version_id=None if version is None else version.id,
            version=None if version is None else version.version,
            action=entry.action.value,
            from_stage=None if entry.from_stage is None else entry.from_stage.value,
            to_stage=None if entry.to_stage is None else entry.to_stage.value,
            actor=entry.actor,
            reason=entry.reason,
            evidence=entry.evidence,
            created_at=utc_now(),
        )
    )
    session.flush()


def ledger_entry(model: str, row: LedgerRow) -> LedgerEntry:
    """The public view of a ledger row."""
    return LedgerEntry(
        id=row.id,
        operation_id=row.operation_id,
        model=model,
        version=row.version,
        action=Action(row.action),
        from_stage=None if row.from_stage is None else Stage(row.from_stage),
        to_stage=None if row.to_stage is None else Stage(row.to_stage),
        actor=row.actor,
        reason=row.reason,
        evidence=row.evidence,
        created_at=as_utc(row.created_at),
    )
