"""``metarec status``: the state of one model's loop on one screen, as data.

Production and staging versions; the last gate decision; the active (else the latest)
rollout and its canary weight; the services' live online quality and drift per version
(:mod:`metarec.ops.live_series`); feature freshness from the Feast registry; the last retrain
(the newest registration or rejection in the ledger: every retrain ends in one) and the next
one due by ``workflows.retrain_cron``. A part that cannot be read says why; it never fails
the whole report.
"""

from __future__ import annotations

from datetime import UTC, datetime

from cronsim import CronSim, CronSimError
from pydantic import BaseModel, ConfigDict, Field

from metarec.config import Settings
from metarec.errors import MetaRecError
from metarec.features.freshness import MaterializationReader
from metarec.ops._registry import registry_session
from metarec.ops.live_series import LiveSeries, read_live_series
from metarec.registry import Action, Registry, Stage
from metarec.registry.types import LedgerEntry, VersionInfo
from metarec.rollout.store import RolloutStore
from metarec.rollout.types import RolloutState

_GATE_ACTIONS = (Action.REGISTER, Action.REJECT)


class GateLine(BaseModel):
    """The newest gate outcome in the ledger: a registration (passed) or a rejection."""

    model_config = ConfigDict(frozen=True)

    accepted: bool
    version: int | None
    at: datetime
    actor: str
    summary: str


class RolloutLine(BaseModel):
    """The active rollout, else the latest one."""

    model_config = ConfigDict(frozen=True)

    id: str
    version: int
    production_version: int | None
    phase: str
    active: bool
    canary_weight: int
    message: str
    updated_at: datetime | None


class RetrainLine(BaseModel):
    """When the model was last retrained and when the schedule runs next."""

    model_config = ConfigDict(frozen=True)

    cron: str
    last_at: datetime | None
    next_at: datetime | None
    problem: str = ""


class FreshnessLine(BaseModel):
    """Feature views' latest materialisation ends (empty with ``problem`` when unreadable)."""

    model_config = ConfigDict(frozen=True)

    views: dict[str, datetime | None] = Field(default_factory=dict)
    problem: str = ""


class StatusReport(BaseModel):
    """Everything ``metarec status`` shows."""

    model_config = ConfigDict(frozen=True)

    model: str
    at: datetime
    production: VersionInfo | None
    staging: list[VersionInfo]
    last_gate: GateLine | None
    rollout: RolloutLine | None
    live: LiveSeries | None
    freshness: FreshnessLine | None
    retrain: RetrainLine


def gather_status(
    settings: Settings,
    *,
    model: str | None = None,
    live: bool = True,
    features: bool = True,
    registry: Registry | None = None,
    now: datetime | None = None,
) -> StatusReport:
    """Read the state of ``model``'s loop.

    Args:
        settings: MetaRec settings (registry, services, Feast, schedule).
        model: Registered model (default: ``registry.model_name``).
        live: Also read the services' live series (scrape or Prometheus).
        features: Also read feature freshness from the Feast registry.
        registry: An open registry (default: open the configured one for this call).
        now: The time the next retrain is computed from (default: now, UTC).

    Returns:
        The report; parts that could not be read carry the reason.
    """
    name = model or settings.registry.model_name
    now = now or datetime.now(UTC)
    with registry_session(settings, registry) as current:
        versions = _versions(current, name)
        history = _history(current, name)
        rollout = _rollout(RolloutStore(engine=current.engine), name)
    last_gate = _last_gate(history)
    return StatusReport(
        model=name,
        at=now,
        production=next((v for v in versions if v.stage is Stage.PRODUCTION), None),
        staging=[v for v in versions if v.stage is Stage.STAGING],
        last_gate=last_gate,
        rollout=rollout,
        live=read_live_series(settings) if live else None,
        freshness=_freshness(settings) if features else None,
        retrain=_retrain(settings, last_gate, now),
    )


def _versions(registry: Registry, model: str) -> list[VersionInfo]:
    try:
        return registry.list_versions(model)
    except MetaRecError:  # no such model yet: nothing registered
        return []


def _history(registry: Registry, model: str) -> list[LedgerEntry]:
    try:
        return registry.history(model)
    except MetaRecError:
        return []


def _last_gate(history: list[LedgerEntry]) -> GateLine | None:
    entry = next((e for e in reversed(history) if e.action in _GATE_ACTIONS), None)
    if entry is None:
        return None
    return GateLine(
        accepted=entry.action is Action.REGISTER,
        version=entry.version,
        at=entry.created_at,
        actor=entry.actor,
        summary=entry.reason,
    )


def _rollout(store: RolloutStore, model: str) -> RolloutLine | None:
    active = store.active(model)
    state: RolloutState | None = active[0] if active else store.latest(model)
    if state is None:
        return None
    return RolloutLine(
        id=state.id,
        version=state.version,
        production_version=state.production_version,
        phase=state.phase.value,
        active=not state.phase.terminal,
        canary_weight=state.canary_weight,
        message=state.message,
        updated_at=state.updated_at,
    )


def _freshness(settings: Settings) -> FreshnessLine:
    try:
        return FreshnessLine(views=MaterializationReader(settings)())
    except MetaRecError as exc:
        return FreshnessLine(problem=str(exc).splitlines()[0])


def _retrain(settings: Settings, last_gate: GateLine | None, now: datetime) -> RetrainLine:
    cron = settings.workflows.retrain_cron
    last = None if last_gate is None else last_gate.at
    try:
        upcoming = next(CronSim(cron, now.astimezone(UTC).replace(tzinfo=None)))
    except (CronSimError, StopIteration) as exc:
        return RetrainLine(cron=cron, last_at=last, next_at=None, problem=str(exc))
    return RetrainLine(cron=cron, last_at=last, next_at=upcoming.replace(tzinfo=UTC))
