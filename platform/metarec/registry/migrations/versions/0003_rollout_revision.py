"""Rollout state compare-and-set: rollout_runs.revision (existing rows start at 0).

Revision ID: 0003_rollout_revision
Revises: 0002_rollouts
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_rollout_revision"
down_revision = "0002_rollouts"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the revision column that every rollout save compares and bumps."""
    op.add_column(
        "rollout_runs",
        sa.Column("revision", sa.Integer, nullable=False, server_default=sa.text("0")),
    )


def downgrade() -> None:
    """Drop the revision column."""
    with op.batch_alter_table("rollout_runs") as batch:
        batch.drop_column("revision")
