"""Registry tables, one-production-version index and the append-only ledger triggers.

Revision ID: 0001_initial
Revises:
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_initial"
down_revision = None
branch_labels = None
depends_on = None

PRODUCTION_ONLY = sa.text("stage = 'production'")
APPEND_ONLY_MESSAGE = "registry_ledger is append-only: entries are never updated or deleted"


def upgrade() -> None:
    """Create the tables, indexes and triggers."""
    _create_models()
    _create_versions()
    _create_ledger()
    _create_ledger_triggers(op.get_bind().dialect.name)


def _create_models() -> None:
    """``registry_models``: one row per model name."""
    op.create_table(
        "registry_models",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )


def _create_versions() -> None:
    """``registry_versions`` and the index that allows one production version per model."""
    op.create_table(
        "registry_versions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("model_id", sa.Integer, sa.ForeignKey("registry_models.id"), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("stage", sa.String(16), nullable=False),
        sa.Column("artifact_uri", sa.Text, nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("files", sa.JSON, nullable=False),
        sa.Column("card", sa.JSON, nullable=False),
        sa.Column("algorithm", sa.String(64)),
        sa.Column("feature_service", sa.String(128)),
        sa.Column("feature_service_version", sa.String(128)),
        sa.Column("dataset_fingerprint", sa.String(128)),
        sa.Column("snapshot_id", sa.String(128)),
        sa.Column("validation_result_id", sa.String(128)),
        sa.Column("code_version", sa.String(128)),
        sa.Column("gate_decision", sa.JSON),
        sa.Column("bento_tag", sa.String(140)),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("model_id", "version", name="uq_registry_versions_number"),
        sa.UniqueConstraint("model_id", "digest", name="uq_registry_versions_digest"),
        sa.CheckConstraint(
            "stage IN ('staging', 'production', 'archived')", name="ck_registry_versions_stage"
        ),
    )
    # At most one production version per model: a partial unique index (SQLite ≥ 3.8, PostgreSQL).
    op.create_index(
        "uq_registry_versions_one_production",
        "registry_versions",
        ["model_id"],
        unique=True,
        sqlite_where=PRODUCTION_ONLY,
        postgresql_where=PRODUCTION_ONLY,
    )


def _create_ledger() -> None:
    """``registry_ledger``: the append-only history, indexed by operation."""
    op.create_table(
        "registry_ledger",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("operation_id", sa.String(32), nullable=False),
        sa.Column("model_id", sa.Integer, sa.ForeignKey("registry_models.id"), nullable=False),
        sa.Column("version_id", sa.Integer, sa.ForeignKey("registry_versions.id")),
        sa.Column("version", sa.Integer),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("from_stage", sa.String(16)),
        sa.Column("to_stage", sa.String(16)),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("evidence", sa.JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_registry_ledger_operation_id", "registry_ledger", ["operation_id"])


def _create_ledger_triggers(dialect: str) -> None:
    """Triggers refusing ``UPDATE`` and ``DELETE`` (PostgreSQL: ``TRUNCATE`` too) on the ledger."""
    if dialect == "sqlite":
        for event in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER registry_ledger_no_{event.lower()} BEFORE {event} "
                f"ON registry_ledger BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY_MESSAGE}'); END"
            )
    elif dialect == "postgresql":
        op.execute(
            "CREATE FUNCTION registry_ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS "
            f"$$ BEGIN RAISE EXCEPTION '{APPEND_ONLY_MESSAGE}'; END; $$"
        )
        op.execute(
            "CREATE TRIGGER registry_ledger_no_change BEFORE UPDATE OR DELETE ON registry_ledger "
            "FOR EACH ROW EXECUTE FUNCTION registry_ledger_append_only()"
        )
        op.execute(
            "CREATE TRIGGER registry_ledger_no_truncate BEFORE TRUNCATE ON registry_ledger "
            "FOR EACH STATEMENT EXECUTE FUNCTION registry_ledger_append_only()"
        )


def downgrade() -> None:
    """Drop everything this revision created."""
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS registry_ledger_no_truncate ON registry_ledger")
        op.execute("DROP TRIGGER IF EXISTS registry_ledger_no_change ON registry_ledger")
        op.execute("DROP FUNCTION IF EXISTS registry_ledger_append_only()")
    op.drop_table("registry_ledger")
    op.drop_index("uq_registry_versions_one_production", table_name="registry_versions")
    op.drop_table("registry_versions")
    op.drop_table("registry_models")
