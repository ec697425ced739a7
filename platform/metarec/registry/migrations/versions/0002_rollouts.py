"""Canary rollout state: rollout_runs (one active per model) and rollout_events.

Revision ID: 0002_rollouts
Revises: 0001_initial
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_rollouts"
down_revision = "0001_initial"
branch_labels = None
depends_on = None

ACTIVE_ONLY = sa.text("phase IN ('Initializing', 'Progressing', 'Promoting', 'RollingBack')")


def upgrade() -> None:
    """Create the rollout tables."""
    op.create_table(
        "rollout_runs",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("model", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("production_version", sa.Integer),
        sa.Column("phase", sa.String(16), nullable=False),
        sa.Column("spec", sa.JSON, nullable=False),
        sa.Column("step_index", sa.Integer, nullable=False),
        sa.Column("canary_weight", sa.Integer, nullable=False),
        sa.Column("failed_checks", sa.Integer, nullable=False),
        sa.Column("production_mae", sa.Float),
        sa.Column("abort_requested", sa.Boolean, nullable=False),
        sa.Column("window_started_at", sa.DateTime(timezone=True)),
        sa.Column("verdict", sa.JSON),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index(
        "uq_rollout_runs_one_active",
        "rollout_runs",
        ["model"],
        unique=True,
        sqlite_where=ACTIVE_ONLY,
        postgresql_where=ACTIVE_ONLY,
    )
    op.create_table(
        "rollout_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("rollout_id", sa.String(32), sa.ForeignKey("rollout_runs.id"), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("phase", sa.String(16), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("step_index", sa.Integer, nullable=False),
        sa.Column("production_weight", sa.Integer, nullable=False),
        sa.Column("canary_weight", sa.Integer, nullable=False),
        sa.Column("metrics", sa.JSON),
        sa.Column("checks", sa.JSON),
        sa.Column("message", sa.Text, nullable=False),
    )
    op.create_index("ix_rollout_events_rollout_id", "rollout_events", ["rollout_id"])


def downgrade() -> None:
    """Drop the rollout tables."""
    op.drop_table("rollout_events")
    op.drop_index("uq_rollout_runs_one_active", table_name="rollout_runs")
    op.drop_table("rollout_runs")
