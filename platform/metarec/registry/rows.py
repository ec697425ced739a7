"""Row lookups inside a transaction: a model or version row, or the error that names it."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from metarec.clock import utc_now
from metarec.errors import ModelNotFoundError, VersionNotFoundError
from metarec.registry.schema import ModelRow, VersionRow
from metarec.registry.sessions import Sessions
from metarec.registry.types import Stage


def model_row(session: Session, name: str, *, lock: bool = False) -> ModelRow:
    """The row of model ``name`` (``lock``: ``SELECT … FOR UPDATE``, serialising mutations).

    Raises:
        ModelNotFoundError: No model has this name.
    """
    query = select(ModelRow).where(ModelRow.name == name)
    if lock:
        query = query.with_for_update()
    row = session.scalar(query)
    if row is None:
        raise ModelNotFoundError(
            f"No registered model named {name!r}.",
            fix="register a version first (`metarec models register ARTIFACT`), or check "
            "the name with `metarec models list`.",
        )
    return row


def version_row(session: Session, model: ModelRow, number: int) -> VersionRow:
    """The row of version ``number`` of ``model``.

    Raises:
        VersionNotFoundError: The model has no such version.
    """
    row = session.scalar(
        select(VersionRow).where(VersionRow.model_id == model.id, VersionRow.version == number)
    )
    if row is None:
        raise VersionNotFoundError(
            f"Model {model.name!r} has no version v{number}.",
            fix=f"list its versions with `metarec models list --model {model.name}`.",
        )
    return row


def production_row(session: Session, model: ModelRow) -> VersionRow | None:
    """The production version row of ``model``, or None."""
    return session.scalar(
        select(VersionRow).where(
            VersionRow.model_id == model.id, VersionRow.stage == Stage.PRODUCTION.value
        )
    )


def digest_row(session: Session, model: ModelRow, digest: str) -> VersionRow | None:
    """The version of ``model`` registered from the artifact with ``digest``, or None."""
    return session.scalar(
        select(VersionRow).where(VersionRow.model_id == model.id, VersionRow.digest == digest)
    )


def next_version(session: Session, model: ModelRow) -> int:
    """The number the next version of ``model`` gets (1 for the first)."""
    latest = session.scalar(
        select(func.max(VersionRow.version)).where(VersionRow.model_id == model.id)
    )
    return (latest or 0) + 1


def ensure_model(db: Sessions, name: str) -> None:
    """Create the model row of ``name`` unless it exists (a concurrent creation is fine)."""
    with db.read() as session:
        if session.scalar(select(ModelRow.id).where(ModelRow.name == name)) is not None:
            return
    with db.write_if_new() as session:
        session.add(ModelRow(name=name, created_at=utc_now()))
