"""The registry's tables (SQLAlchemy 2.x declarative models).

Three tables, all prefixed ``registry_`` so they can share a database with other tools:

* ``registry_models``: one row per model name.
* ``registry_versions``: one row per registered version, with its stage, artifact location,
  per-file sha256, lineage and gate decision. A partial unique index allows at most one
  ``production`` row per model: the database, not the code, guarantees a single production
  version.
* ``registry_ledger``: the append-only history of every registration and transition. Database
  triggers (created by the migrations) refuse ``UPDATE`` and ``DELETE`` on it.

The migrations in ``migrations/versions`` create exactly these tables; a test compares them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

STAGES = ("staging", "production", "archived")
PRODUCTION_ONLY = text("stage = 'production'")


class Base(DeclarativeBase):
    """Declarative base with its own metadata (never shared with other packages)."""

    metadata = MetaData()


class ModelRow(Base):
    """A registered model: a name that versions belong to."""

    __tablename__ = "registry_models"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class VersionRow(Base):
    """A registered model version."""

    __tablename__ = "registry_versions"
    __table_args__ = (
        UniqueConstraint("model_id", "version", name="uq_registry_versions_number"),
        UniqueConstraint("model_id", "digest", name="uq_registry_versions_digest"),
        CheckConstraint(
            "stage IN ('staging', 'production', 'archived')", name="ck_registry_versions_stage"
        ),
        Index(
            "uq_registry_versions_one_production",
            "model_id",
            unique=True,
            sqlite_where=PRODUCTION_ONLY,
            postgresql_where=PRODUCTION_ONLY,
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("registry_models.id"), nullable=False)
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    stage: Mapped[str] = mapped_column(String(16), nullable=False)
    artifact_uri: Mapped[str] = mapped_column(Text, nullable=False)
    digest: Mapped[str] = mapped_column(String(64), nullable=False)
    files: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    card: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    algorithm: Mapped[str | None] = mapped_column(String(64))
    feature_service: Mapped[str | None] = mapped_column(String(128))
    feature_service_version: Mapped[str | None] = mapped_column(String(128))
    dataset_fingerprint: Mapped[str | None] = mapped_column(String(128))
    snapshot_id: Mapped[str | None] = mapped_column(String(128))
    validation_result_id: Mapped[str | None] = mapped_column(String(128))
    code_version: Mapped[str | None] = mapped_column(String(128))
    gate_decision: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    bento_tag: Mapped[str | None] = mapped_column(String(140))
    created_by: Mapped[str] = mapped_column(String(128), nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class LedgerRow(Base):
    """One append-only ledger entry: who moved what from where to where, why, with evidence."""

    __tablename__ = "registry_ledger"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    operation_id: Mapped[str] = mapped_column(String(32), nullable=False, index=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("registry_models.id"), nullable=False)
    version_id: Mapped[int | None] = mapped_column(ForeignKey("registry_versions.id"))
    version: Mapped[int | None] = mapped_column(Integer)
    action: Mapped[str] = mapped_column(String(16), nullable=False)
    from_stage: Mapped[str | None] = mapped_column(String(16))
    to_stage: Mapped[str | None] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(128), nullable=False)
    reason: Mapped[str] = mapped_column(Text, nullable=False)
    evidence: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
