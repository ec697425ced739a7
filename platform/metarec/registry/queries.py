"""Read-only queries: models, versions, production, the ledger, and the public views of rows."""

from __future__ import annotations

from sqlalchemy import func, select

from metarec.clock import as_utc
from metarec.registry import rows
from metarec.registry.ledger import ledger_entry
from metarec.registry.lineage import lineage_of
from metarec.registry.schema import LedgerRow, ModelRow, VersionRow
from metarec.registry.sessions import Sessions
from metarec.registry.types import (
    LedgerEntry,
    ModelSummary,
    Stage,
    VersionInfo,
    VersionRef,
)


def ping(db: Sessions) -> str:
    """Check that the database answers; return its dialect name."""
    with db.read() as session:
        session.execute(select(1))
    return db.engine.dialect.name


def list_models(db: Sessions) -> list[ModelSummary]:
    """Every registered model with its version count and production version."""
    with db.read() as session:
        out = []
        for row in session.scalars(select(ModelRow).order_by(ModelRow.name)).all():
            count = session.scalar(
                select(func.count(VersionRow.id)).where(VersionRow.model_id == row.id)
            )
            production = rows.production_row(session, row)
            out.append(
                ModelSummary(
                    name=row.name,
                    versions=count or 0,
                    production=None if production is None else production.version,
                    created_at=as_utc(row.created_at),
                )
            )
        return out


def list_versions(db: Sessions, model: str, *, stage: Stage | None = None) -> list[VersionInfo]:
    """The versions of ``model``, oldest first (optionally one stage only)."""
    with db.read() as session:
        model_row = rows.model_row(session, model)
        query = select(VersionRow).where(VersionRow.model_id == model_row.id)
        if stage is not None:
            query = query.where(VersionRow.stage == stage.value)
        found = session.scalars(query.order_by(VersionRow.version)).all()
        return [version_info(model, row) for row in found]


def get_version(db: Sessions, ref: VersionRef) -> VersionInfo:
    """One version with its lineage and gate decision."""
    with db.read() as session:
        model_row = rows.model_row(session, ref.model)
        return version_info(ref.model, rows.version_row(session, model_row, ref.version))


def production_version(db: Sessions, model: str) -> int | None:
    """The number of the production version of ``model`` (None: none, or no such model)."""
    with db.read() as session:
        return session.scalar(
            select(VersionRow.version)
            .join(ModelRow, ModelRow.id == VersionRow.model_id)
            .where(ModelRow.name == model, VersionRow.stage == Stage.PRODUCTION.value)
        )


def production(db: Sessions, model: str) -> VersionInfo | None:
    """The production version of ``model``, or None."""
    number = production_version(db, model)
    return None if number is None else get_version(db, VersionRef(model=model, version=number))


def find_by_digest(db: Sessions, model: str, digest: str) -> VersionInfo | None:
    """The version of ``model`` registered from the artifact with ``digest``, if any."""
    with db.read() as session:
        row = session.scalar(
            select(VersionRow)
            .join(ModelRow, ModelRow.id == VersionRow.model_id)
            .where(ModelRow.name == model, VersionRow.digest == digest)
        )
        return None if row is None else version_info(model, row)


def history(db: Sessions, model: str, *, version: int | None = None) -> list[LedgerEntry]:
    """The ledger of ``model`` (optionally of one version), oldest first."""
    with db.read() as session:
        model_row = rows.model_row(session, model)
        query = select(LedgerRow).where(LedgerRow.model_id == model_row.id)
        if version is not None:
            query = query.where(LedgerRow.version == version)
        return [ledger_entry(model, row) for row in session.scalars(query.order_by(LedgerRow.id))]


def version_info(model: str, row: VersionRow) -> VersionInfo:
    """The public view of a version row, with its lineage from the typed stored card."""
    tag = f"{model}:v{row.version}"
    return VersionInfo(
        model=model,
        version=row.version,
        tag=tag,
        stage=Stage(row.stage),
        artifact_uri=row.artifact_uri,
        digest=row.digest,
        files=row.files,
        lineage=lineage_of(row, tag=tag),
        gate_decision=row.gate_decision,
        bento_tag=row.bento_tag,
        created_by=row.created_by,
        created_at=as_utc(row.created_at),
    )
