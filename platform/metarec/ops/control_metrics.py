"""Prometheus series of the registry and the embedded rollout controller (``GET /metrics``).

The rollout controller serves these on its health port (``metarec rollout controller
--health-port``): stage versions, the latest rollout's canary weight, phase and failed checks,
ledger counts and times per action, and the time of the last registered training. Nothing is
kept in the process: each scrape reads the registry database (read-only: three small queries,
then one per model for its latest rollout, at most ``max_models`` models), so every restart
exposes the same values. Names and labels are those of :mod:`metarec.metrics_contract`; the
chart's dashboards read them.

A scrape whose read fails exposes only ``metarec_registry_read_error 1`` (the scrape itself
succeeds, so an alert can tell a database outage from a controller that is down).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from sqlalchemy import Engine

from metarec import metrics_contract as contract
from metarec.config import Settings
from metarec.errors import RegistryError, RolloutError
from metarec.ops._registry import registry_session
from metarec.registry import Action
from metarec.registry.activity import DEFAULT_MAX_MODELS, ModelActivity, read_activity
from metarec.rollout import Phase, RolloutState
from metarec.rollout.store import RolloutStore

log = logging.getLogger(__name__)


class ControlPlaneCollector:
    """A prometheus_client collector that reads the registry and the rollouts on each scrape."""

    def __init__(self, *, engine: Engine, max_models: int = DEFAULT_MAX_MODELS) -> None:
        """Read through ``engine``.

        Args:
            engine: The registry database engine (``Registry.engine``); the controller's
                database role may read every table used (``SELECT`` on models, versions, the
                ledger and the rollouts).
            max_models: Most models exposed (by name): a scrape stays bounded.
        """
        self._engine = engine
        self._store = RolloutStore(engine=engine)
        self._max_models = max_models

    def describe(self) -> list[Metric]:
        """Nothing up front: registering the collector must not query the database."""
        return []

    def collect(self) -> Iterator[Metric]:
        """The families of one scrape, then the read-error gauge."""
        failed = 0.0
        try:
            families = self._families()
        except (RegistryError, RolloutError) as exc:
            log.warning("metrics scrape could not read the registry: %s", exc)
            families, failed = [], 1.0
        yield from families
        error = GaugeMetricFamily(
            contract.REGISTRY_READ_ERROR,
            "1 when this scrape could not read the registry database (the other registry and "
            "rollout series are then absent).",
        )
        error.add_metric([], failed)
        yield error

    def _families(self) -> list[Metric]:
        activity = read_activity(self._engine, max_models=self._max_models)
        latest = {each.model: self._store.latest(each.model) for each in activity}
        return [*registry_families(activity), *rollout_families(latest)]


def registry_families(activity: list[ModelActivity]) -> list[Metric]:
    """Stage versions, ledger counts and times, last training: one sample per model (action)."""
    labels = [contract.MODEL]
    production = GaugeMetricFamily(
        contract.PRODUCTION_VERSION,
        "The production version's number (absent while the model has none).",
        labels=labels,
    )
    staging = GaugeMetricFamily(
        contract.STAGING_VERSION,
        "The newest staging version's number (absent while none is in staging).",
        labels=labels,
    )
    trained = GaugeMetricFamily(
        contract.LAST_TRAINING,
        "Unix time the newest version was registered (its training passed the gate).",
        labels=labels,
    )
    events = CounterMetricFamily(
        contract.REGISTRY_EVENTS.removesuffix("_total"),
        "Ledger entries of the model by action (the ledger is append-only).",
        labels=[contract.MODEL, contract.ACTION],
    )
    last_event = GaugeMetricFamily(
        contract.REGISTRY_LAST_EVENT,
        "Unix time of the model's newest ledger entry of the action.",
        labels=[contract.MODEL, contract.ACTION],
    )
    for each in activity:
        if each.production is not None:
            production.add_metric([each.model], each.production)
        if each.staging is not None:
            staging.add_metric([each.model], each.staging)
        if each.last_registered_at is not None:
            trained.add_metric([each.model], each.last_registered_at.timestamp())
        for action in Action:  # every action, 0 until seen: increase() counts the first one
            tally = each.actions.get(action)
            events.add_metric([each.model, action.value], 0 if tally is None else tally.count)
            if tally is not None:
                last_event.add_metric([each.model, action.value], tally.last_at.timestamp())
    return [production, staging, trained, events, last_event]


def rollout_families(latest: dict[str, RolloutState | None]) -> list[Metric]:
    """Canary weight, phase and failed checks of each model's latest embedded rollout."""
    labels = [contract.MODEL, contract.VERSION]
    weight = GaugeMetricFamily(
        contract.CANARY_WEIGHT,
        "Canary traffic weight in percent of the model's latest rollout while it is active "
        '(0 once it ended; version "" before the first rollout).',
        labels=labels,
    )
    phase = GaugeMetricFamily(
        contract.ROLLOUT_PHASE,
        "1 for the phase of the model's latest rollout, 0 for the other phases.",
        labels=[*labels, contract.PHASE],
    )
    failed = GaugeMetricFamily(
        contract.ROLLOUT_FAILED_CHECKS,
        "Analysis windows of the model's latest rollout that failed in a row.",
        labels=labels,
    )
    for model, state in latest.items():
        if state is None:
            weight.add_metric([model, ""], 0)
            continue
        key = [model, str(state.version)]
        weight.add_metric(key, 0 if state.phase.terminal else state.canary_weight)
        failed.add_metric(key, state.failed_checks)
        for each in Phase:
            phase.add_metric([*key, each.value], 1 if each is state.phase else 0)
    return [weight, phase, failed]


def control_metrics_registry(
    engine: Engine, *, max_models: int = DEFAULT_MAX_MODELS
) -> CollectorRegistry:
    """A registry of its own (never prometheus_client's global one) with the collector on it.

    Args:
        engine: The registry database engine.
        max_models: Most models exposed.

    Returns:
        What ``prometheus_client.generate_latest`` exposes on ``GET /metrics``.
    """
    registry = CollectorRegistry()
    registry.register(ControlPlaneCollector(engine=engine, max_models=max_models))
    return registry


@contextmanager
def control_metrics(settings: Settings) -> Iterator[CollectorRegistry]:
    """Open the configured registry for metrics scrapes; close it when the block ends.

    Args:
        settings: MetaRec settings (where the registry is).

    Raises:
        RegistryError: The registry cannot be opened.
    """
    with registry_session(settings, None) as registry:
        yield control_metrics_registry(registry.engine)
