"""Rollout tables in the registry database (they share the registry's declarative metadata).

* ``rollout_runs``: one row per rollout, its phase and step; a partial unique index allows at
  most one active (non-terminal) rollout per model.
* ``rollout_events``: what the controller did and measured, window by window (the report and
  the verdict are built from it).

Created by migration ``0002_rollouts``; ``rollout_runs.revision`` (the compare-and-set
version of a rollout's state) by ``0003_rollout_revision``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from metarec.registry.schema import Base

ACTIVE_ONLY = text("phase IN ('Initializing', 'Progressing', 'Promoting', 'RollingBack')")


class RolloutRow(Base):
    """One canary rollout of a model version."""

    __tablename__ = "rollout_runs"
    __table_args__ = (
        Index(
            "uq_rollout_runs_one_active",
            "model",
            unique=True,
            sqlite_where=ACTIVE_ONLY,
            postgresql_where=ACTIVE_ONLY,
        ),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    model: Mapped[str] = mapped_column(String(64), nullable=False)
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    production_version: Mapped[int | None] = mapped_column(Integer)
    phase: Mapped[str] = mapped_column(String(16), nullable=False)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    step_index: Mapped[int] = mapped_column(Integer, nullable=False)
    canary_weight: Mapped[int] = mapped_column(Integer, nullable=False)
    failed_checks: Mapped[int] = mapped_column(Integer, nullable=False)
    production_mae: Mapped[float | None] = mapped_column(Float)
    abort_requested: Mapped[bool] = mapped_column(Boolean, nullable=False)
    window_started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    verdict: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    message: Mapped[str] = mapped_column(Text, nullable=False)
    actor: Mapped[str] = mapped_column(String(128), nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    # Bumped by every save; a save carrying an older revision is refused (compare-and-set).
    revision: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("0"))


class RolloutEventRow(Base):
    """One controller event: a phase change, a weight change or an analysed window."""

    __tablename__ = "rollout_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    rollout_id: Mapped[str] = mapped_column(
        ForeignKey("rollout_runs.id"), nullable=False, index=True
    )
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    phase: Mapped[str] = mapped_column(String(16), nullable=False)
    action: Mapped[str] = mapped_column(String(16), nullable=False)
    step_index: Mapped[int] = mapped_column(Integer, nullable=False)
    production_weight: Mapped[int] = mapped_column(Integer, nullable=False)
    canary_weight: Mapped[int] = mapped_column(Integer, nullable=False)
    metrics: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    checks: Mapped[list[Any] | None] = mapped_column(JSON)
    message: Mapped[str] = mapped_column(Text, nullable=False)
