"""Aggregates of the registry for monitoring: stage versions and ledger counts per model.

What a metrics scrape reads (:mod:`metarec.ops.control_metrics`): the models, then versions and
ledger entries grouped per model and stage / action, in one read-only transaction. However long
the ledger grows, the answers stay bounded by the number of models (at most ``max_models``, by
name), stages and actions. They read only ``registry_models``, ``registry_versions`` and
``registry_ledger``, which the ``controller`` and ``writer`` database roles may ``SELECT``
(``serving`` may not read the ledger; :mod:`metarec.registry.grants`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Engine, Row, func, select

from metarec.clock import as_utc
from metarec.registry.schema import LedgerRow, ModelRow, VersionRow
from metarec.registry.sessions import Sessions
from metarec.registry.types import Action, Stage

DEFAULT_MAX_MODELS = 50
# Per model and stage: the highest version number and the newest registration.
_VERSIONS = select(
    VersionRow.model_id,
    VersionRow.stage,
    func.max(VersionRow.version),
    func.max(VersionRow.created_at),
).group_by(VersionRow.model_id, VersionRow.stage)
# Per model and ledger action: how many entries, and when the newest was written.
_LEDGER = select(
    LedgerRow.model_id,
    LedgerRow.action,
    func.count(LedgerRow.id),
    func.max(LedgerRow.created_at),
).group_by(LedgerRow.model_id, LedgerRow.action)


@dataclass(frozen=True, kw_only=True)
class ActionTally:
    """How many ledger entries of one action a model has, and when the newest was written."""

    count: int
    last_at: datetime


@dataclass(frozen=True, kw_only=True)
class ModelActivity:
    """One model's stage versions, newest registration and ledger tallies."""

    model: str
    production: int | None = None
    staging: int | None = None  # the newest version in staging
    last_registered_at: datetime | None = None  # creation of the newest version, any stage
    actions: dict[Action, ActionTally] = field(default_factory=dict)


def read_activity(engine: Engine, *, max_models: int = DEFAULT_MAX_MODELS) -> list[ModelActivity]:
    """The activity of the registry's models, by name (the first ``max_models`` only).

    Args:
        engine: The registry database engine (``Registry.engine``; schema current).
        max_models: Most models read (the answer stays bounded however many are registered).

    Returns:
        One :class:`ModelActivity` per model, by name; ledger actions this MetaRec does not
        know are left out.

    Raises:
        RegistryError: The database could not be read.
    """
    with Sessions(engine).read() as session:
        models = dict(
            session.execute(
                select(ModelRow.id, ModelRow.name).order_by(ModelRow.name).limit(max_models)
            ).all()
        )
        versions = session.execute(_VERSIONS.where(VersionRow.model_id.in_(list(models)))).all()
        ledger = session.execute(_LEDGER.where(LedgerRow.model_id.in_(list(models)))).all()
    production: dict[int, int] = {}
    staging: dict[int, int] = {}
    newest: dict[int, datetime] = {}
    for model_id, stage, number, created in versions:
        if stage == Stage.PRODUCTION.value:
            production[model_id] = number
        elif stage == Stage.STAGING.value:
            staging[model_id] = number
        created = as_utc(created)
        newest[model_id] = max(newest.get(model_id, created), created)
    tallies = _tallies(ledger, models)
    return [
        ModelActivity(
            model=name,
            production=production.get(key),
            staging=staging.get(key),
            last_registered_at=newest.get(key),
            actions=tallies[key],
        )
        for key, name in models.items()
    ]


def _tallies(
    rows: Sequence[Row[tuple[int, str, int, datetime]]], models: dict[int, str]
) -> dict[int, dict[Action, ActionTally]]:
    """Model id → action → tally; actions this MetaRec does not know are left out."""
    known = {action.value for action in Action}
    tallies: dict[int, dict[Action, ActionTally]] = {key: {} for key in models}
    for model_id, action, count, last in rows:
        if action in known:
            tallies[model_id][Action(action)] = ActionTally(count=count, last_at=as_utc(last))
    return tallies
