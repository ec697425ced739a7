"""Canary use cases: start a rollout, carry it out here, or release a version through one.

* :func:`start_canary` creates the rollout of a staging version (``metarec rollout start``); a
  controller carries it out.
* :func:`run_canary` runs the rollout controller in this process until that rollout ends
  (``metarec rollout start --wait``); :func:`run_controller` runs it until told to stop
  (``metarec rollout controller``, the Deployment of the Helm chart).
* :func:`release_canary` is the pipeline's last step: canary a staging version against
  production and promote it when every step passes (the ``canary_rollout`` component, the
  quickstart). The first version has nothing to canary against and is promoted directly; a
  version already in production is left as it is; an active rollout of the same version is
  resumed, never duplicated. With ``rollout.deploy.kind: kubernetes`` (the Helm chart's retrain
  pod) the deploy step (:mod:`metarec.ops.deploy`) sets the version on the cluster's serving
  Deployment and the cluster's engine decides: never a local canary in the pipeline's pod.

A version that learnt from implicit events predicts no ratings, so there is no online MAE to
compare: when the canary or production is such a version, :func:`spec_for_versions` (called by
:func:`start_canary`, hence by every path: the CLI, the local canary and the cluster's
controller, which reads the stored spec) turns the online MAE check off and the online hit-rate
check on, and the spec's ``notes`` say why.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from metarec.config import Settings
from metarec.notify import Notifier
from metarec.ops import deploy, local_canary, notifications
from metarec.ops._registry import registry_session
from metarec.ops.canary_spec import BOOTSTRAP_REASON, PROMOTED_OUTCOMES, Outcome
from metarec.registry import Registry, Stage, VersionRef
from metarec.rollout.controller import RolloutController, start_rollout, wait_for_rollout
from metarec.rollout.report import write_report
from metarec.rollout.store import RolloutStore
from metarec.rollout.traffic import Row, TrafficSummary
from metarec.rollout.types import Phase, RolloutSpec, RolloutState
from metarec.rollout.wiring import build_metrics, build_router

REPORT_SUFFIXES = ("html", "png")
# The largest online hit-rate drop a canary is allowed when a version learnt from implicit
# events (the hit rate is then the only quality check) and the spec sets none.
EVENT_HIT_RATE_DROP = 0.05
_OUTCOMES: dict[Phase, Outcome] = {Phase.SUCCEEDED: "promoted", Phase.ABORTED: "aborted"}


@dataclass(frozen=True)
class CanaryOutcome:
    """How :func:`release_canary` ended, with the rollout's final state when one ran."""

    ref: VersionRef
    outcome: Outcome
    reason: str
    production_before: int | None
    production_after: int | None
    state: RolloutState | None = None
    reports: dict[str, Path] = field(default_factory=dict)
    traffic: TrafficSummary | None = None

    @property
    def promoted(self) -> bool:
        """Whether this call put the version in production (canary passed, or first version)."""
        return self.outcome in PROMOTED_OUTCOMES

    @property
    def online_mae(self) -> dict[str, float | None]:
        """The newest online MAE measured of production and canary (None: never measured)."""
        return self._latest("online_mae", production=lambda state: state.production_mae)

    @property
    def online_hit_rate(self) -> dict[str, float | None]:
        """The newest online hit rate measured of production and canary (None: never)."""
        return self._latest("online_hit_rate", production=lambda state: state.production_hit_rate)

    def _latest(
        self, metric: str, *, production: Callable[[RolloutState], float | None]
    ) -> dict[str, float | None]:
        """``metric`` of each side from the verdict's windows, else the state's baseline."""
        if self.state is None:
            return {}
        values: dict[str, float | None] = {"production": production(self.state), "canary": None}
        if self.state.verdict is not None:
            for role, known in values.items():
                latest = self.state.verdict.latest(role, metric)
                values[role] = known if latest is None else latest
        return values


def spec_for_versions(
    registry: Registry, ref: VersionRef, spec: RolloutSpec, *, production: int | None
) -> RolloutSpec:
    """``spec`` with the quality checks the two versions' model cards allow.

    When the canary ``ref`` or the production version learnt from implicit events
    (``card.predicts_ratings`` is False), feedback carries no ratings to score: the online MAE
    check is off and the online hit rate is the quality check, on with the spec's
    ``max_online_hit_rate_drop`` or :data:`EVENT_HIT_RATE_DROP`. The spec's ``notes`` say why
    (``online MAE off: metarec:v3 learnt from implicit events``). Two rating versions keep
    ``spec`` as it is.

    Args:
        registry: The open registry (the cards are read from it, checksum-verified).
        ref: The canary version.
        spec: The spec asked for.
        production: The production version (None: none).

    Returns:
        The spec the rollout runs with.

    Raises:
        ArtifactError: A version's stored model card is not valid.
    """
    refs = [ref] + ([] if production is None else [VersionRef(model=ref.model, version=production)])
    from_events = [one.tag for one in refs if not registry.read_card(one).predicts_ratings]
    if not from_events:
        return spec
    drop = spec.max_online_hit_rate_drop
    chosen = "" if drop is not None else " (the default for versions of implicit events)"
    drop = EVENT_HIT_RATE_DROP if drop is None else drop
    notes = [
        f"online MAE off: {' and '.join(from_events)} learnt from implicit events",
        f"online hit rate on: largest drop {drop:g}{chosen}",
    ]
    return spec.model_copy(
        update={
            "max_online_mae_delta": None,
            "max_online_hit_rate_drop": drop,
            "notes": (*spec.notes, *(note for note in notes if note not in spec.notes)),
        }
    )


def start_canary(
    settings: Settings,
    *,
    ref: VersionRef,
    spec: RolloutSpec,
    actor: str,
    resume: bool = False,
    registry: Registry | None = None,
) -> RolloutState:
    """Create the rollout of staging version ``ref`` (a controller carries it out).

    The rollout runs with :func:`spec_for_versions` of ``spec``: when the canary or production
    learnt from implicit events, the online MAE check is off and the hit-rate check on.

    Args:
        settings: MetaRec settings (the registry database holds the rollout).
        ref: The staging version.
        spec: Traffic steps and analysis thresholds.
        actor: Who starts it (kept with the rollout).
        resume: Return an active rollout of the same version instead of refusing (a retried
            pipeline step).
        registry: An open registry (default: open the configured one for this call).

    Raises:
        VersionNotFoundError: No such version.
        RolloutError: The version is not in staging.
        RolloutConflictError: Another rollout of the model is active.
    """
    with registry_session(settings, registry) as current:
        store = RolloutStore(engine=current.engine)
        if resume:
            for state in store.active(ref.model):
                if state.version == ref.version:
                    return state
        spec = spec_for_versions(
            current, ref, spec, production=current.production_version(ref.model)
        )
        return start_rollout(registry=current, store=store, ref=ref, spec=spec, actor=actor)


@contextmanager
def _controller(
    settings: Settings, registry: Registry, *, actor: str
) -> Iterator[RolloutController]:
    """The rollout controller on the configured router and metric source (released after).

    Its rollouts' ends write their reports and notify ``notifications.webhooks``.
    """
    store = RolloutStore(engine=registry.engine)
    with notifications.notifier_session(settings) as notifier:
        router, release = build_router(settings)
        try:
            yield RolloutController(
                registry=registry,
                store=store,
                router=router,
                metrics=build_metrics(settings, router=router),
                actor=actor,
                on_end=rollout_end_observer(settings, store, notifier),
            )
        finally:
            release()


def rollout_end_observer(
    settings: Settings, store: RolloutStore, notifier: Notifier
) -> Callable[[RolloutState], None] | None:
    """What a controller runs when a rollout ends: its reports, then the notification.

    None when no webhook is configured (the reports are then written by whoever waits for
    the rollout, as before).
    """
    if not settings.notifications.webhooks:
        return None

    def ended(state: RolloutState) -> None:
        reports = write_reports(store, state, settings.paths.rollouts / state.id)
        notification = notifications.rollout_ended(settings, state, reports=reports)
        if notification is not None:
            notifications.send(settings, notification, notifier=notifier)

    return ended


def run_canary(
    settings: Settings, *, rollout_id: str, actor: str, registry: Registry | None = None
) -> RolloutState:
    """Run the rollout controller (on the ``rollout.router``) here until the rollout ends.

    Args:
        settings: MetaRec settings (router, metric source, poll period).
        rollout_id: The rollout to carry out.
        actor: Who the ledger names for a promotion.
        registry: An open registry (default: open the configured one for this call).

    Returns:
        The final state.
    """
    with (
        registry_session(settings, registry) as current,
        _controller(settings, current, actor=actor) as controller,
    ):
        return controller.run_until_done(rollout_id, poll_s=settings.rollout.poll_s)


def run_controller(
    settings: Settings,
    *,
    stop: threading.Event,
    actor: str,
    on_ready: Callable[[], None] | None = None,
) -> None:
    """Reconcile every active rollout of ``registry.model_name`` until ``stop`` is set.

    What the rollout controller Deployment runs (``metarec rollout controller``).

    Args:
        settings: MetaRec settings (router, metric source, poll period, model).
        stop: Set it to stop after the current reconcile.
        actor: Who the ledger names for promotions.
        on_ready: Called once the router and the metric source are wired (readiness).
    """
    with (
        registry_session(settings, None) as registry,
        _controller(settings, registry, actor=actor) as controller,
    ):
        if on_ready is not None:
            on_ready()
        controller.run(
            stop=stop, poll_s=settings.rollout.poll_s, model=settings.registry.model_name
        )


def write_reports(store: RolloutStore, state: RolloutState, folder: Path) -> dict[str, Path]:
    """Write the rollout's timeline into ``folder`` as ``report.html`` and ``report.png``."""
    events = store.events(state.id)
    return {
        suffix: write_report(state, events, folder / f"report.{suffix}")
        for suffix in REPORT_SUFFIXES
    }


def release_canary(
    settings: Settings,
    *,
    ref: VersionRef,
    spec: RolloutSpec,
    actor: str,
    rows: Callable[[], Sequence[Row]] = list,
    traffic_rate_per_s: float | None = 40.0,
    timeout_s: float = 1800.0,
) -> CanaryOutcome:
    """Canary ``ref`` against production and promote it when every step passes.

    ``rollout.deploy.kind: kubernetes``: the version is set on the cluster's serving Deployment
    (:mod:`metarec.ops.deploy`), then the cluster's rollout controller (engine ``embedded``) or
    Flagger (the registry follows its verdict; no rollout state) decides. Otherwise, router
    ``local``: both versions are served here under generated traffic
    (:func:`~metarec.ops.local_canary.run_local_canary`); another: the controller decides.

    Args:
        settings: MetaRec settings.
        ref: The staging version to release.
        spec: Traffic steps and analysis thresholds.
        actor: Who the ledger names.
        rows: Ratings (or positive events, rating None) the local traffic replays (called
            only with router ``local``; empty: no generated traffic).
        traffic_rate_per_s: Highest generated user visits per second.
        timeout_s: Give up after this long; the canary weight then goes back to 0.

    Returns:
        The outcome; with a rollout, its final state, reports and the traffic's summary.

    Raises:
        RolloutError: The version is not in staging, or another rollout is active.
        DeployError: The deploy step could not set the version on the cluster.
    """
    with registry_session(settings, None) as registry:
        production = registry.production_version(ref.model)
        direct = _without_canary(registry, ref, production=production, actor=actor)
        if direct is not None:
            return direct
        if settings.rollout.deploy.kind == "kubernetes":
            return _on_cluster(settings, registry, ref, spec=spec, actor=actor, timeout_s=timeout_s)
        state = start_canary(
            settings, ref=ref, spec=spec, actor=actor, resume=True, registry=registry
        )
        final, traffic = _carry_out(
            settings,
            registry,
            state,
            rows=rows,
            rate=traffic_rate_per_s,
            timeout_s=timeout_s,
            actor=actor,
        )
        return _finished(settings, registry, ref, final, before=production, traffic=traffic)


def _without_canary(
    registry: Registry, ref: VersionRef, *, production: int | None, actor: str
) -> CanaryOutcome | None:
    """The outcome when no canary is needed (already in production, or the first version)."""
    if registry.get_version(ref).stage is Stage.PRODUCTION:
        return CanaryOutcome(
            ref=ref,
            outcome="already-production",
            reason="already in production",
            production_before=production,
            production_after=production,
        )
    if production is None:
        registry.promote(ref, actor=actor, reason=BOOTSTRAP_REASON, expected_production=None)
        return CanaryOutcome(
            ref=ref,
            outcome="bootstrapped",
            reason=BOOTSTRAP_REASON,
            production_before=None,
            production_after=ref.version,
        )
    return None


def _on_cluster(
    settings: Settings,
    registry: Registry,
    ref: VersionRef,
    *,
    spec: RolloutSpec,
    actor: str,
    timeout_s: float,
) -> CanaryOutcome:
    """Deploy ``ref`` on the cluster, then wait for its engine's verdict (no local service)."""
    before = registry.production_version(ref.model)
    deploy.deploy_version(settings, ref=ref, registry=registry)
    if settings.rollout.deploy.engine == "flagger":
        verdict = deploy.await_flagger(settings, ref=ref, registry=registry, timeout_s=timeout_s)
        return CanaryOutcome(
            ref=ref,
            outcome=verdict.outcome,
            reason=verdict.reason,
            production_before=before,
            production_after=registry.production_version(ref.model),
        )
    state = start_canary(settings, ref=ref, spec=spec, actor=actor, resume=True, registry=registry)
    store = RolloutStore(engine=registry.engine)
    final = wait_for_rollout(store, state.id, timeout_s=timeout_s, poll_s=settings.rollout.poll_s)
    return _finished(settings, registry, ref, final, before=before, traffic=None)


def _carry_out(
    settings: Settings,
    registry: Registry,
    state: RolloutState,
    *,
    rows: Callable[[], Sequence[Row]],
    rate: float | None,
    timeout_s: float,
    actor: str,
) -> tuple[RolloutState, TrafficSummary | None]:
    """Run the rollout here (router ``local``) or wait for the cluster's controller."""
    store = RolloutStore(engine=registry.engine)
    if settings.rollout.router.kind != "local":
        return wait_for_rollout(store, state.id, timeout_s=timeout_s), None
    with notifications.notifier_session(settings) as notifier:
        result = local_canary.run_local_canary(  # looked up at call time: tests stand in for it
            settings,
            registry=registry,
            store=store,
            state=state,
            rows=rows(),
            traffic_rate_per_s=rate,
            timeout_s=timeout_s,
            actor=actor,
            on_end=rollout_end_observer(settings, store, notifier),
        )
    return result.state, result.traffic


def _finished(
    settings: Settings,
    registry: Registry,
    ref: VersionRef,
    state: RolloutState,
    *,
    before: int | None,
    traffic: TrafficSummary | None,
) -> CanaryOutcome:
    """The outcome of a rollout that ran, its reports written."""
    folder = settings.paths.rollouts / state.id
    return CanaryOutcome(
        ref=ref,
        outcome=_OUTCOMES.get(state.phase, "rolled-back"),
        reason=state.message,
        production_before=before,
        production_after=registry.production_version(ref.model),
        state=state,
        reports=write_reports(RolloutStore(engine=registry.engine), state, folder),
        traffic=traffic,
    )
