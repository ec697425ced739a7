"""Use case: carry one canary rollout out on this machine (laptop, quickstart, CI).

:func:`run_local_canary` starts the production and canary versions as two real ``bentoml serve``
processes, puts the local weighted router in front, drives generated traffic through it (users
replayed as ``/recommend`` on their first ratings, then ``/feedback`` with their later ones:
:class:`~metarec.rollout.traffic.TrafficGenerator`; for a training set of implicit events,
their positive events without ratings, for versions that learnt from events), runs
the rollout controller in this process until the rollout ends, then stops everything. The
services trust only a bearer token made for the run (:func:`new_feedback_token`), which the
generated traffic sends: only its feedback, scored against its own lists and predictions, feeds
the online MAE and hit rate the controller judges the canary on. (On a
cluster the rollout controller Deployment does this under real traffic; see
:func:`metarec.rollout.controller.wait_for_rollout`.) It lives in the use-case layer because it
joins two domain packages: serving (the processes) and rollout (router, controller, traffic).
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from metarec.config import Settings
from metarec.registry import Registry, VersionRef
from metarec.rollout.controller import RolloutController
from metarec.rollout.routers import Router
from metarec.rollout.store import RolloutStore
from metarec.rollout.traffic import Row, TrafficGenerator, TrafficSummary
from metarec.rollout.types import RolloutState
from metarec.rollout.wiring import build_metrics, build_router
from metarec.router_config import LocalRouterConfig
from metarec.serving.process import ServiceProcess, feedback_headers

log = logging.getLogger(__name__)

# One torch thread per service: two services, the router, the controller and the traffic share
# the machine's cores.
SERVICE_ENV = {"METAREC_SERVING__TORCH_THREADS": "1"}


def new_feedback_token() -> str:
    """A random feedback token for one local canary (both services and its traffic)."""
    return secrets.token_urlsafe(32)


@dataclass(frozen=True)
class LocalCanaryResult:
    """The finished (or timed-out) rollout and what the generated traffic saw."""

    state: RolloutState
    traffic: TrafficSummary | None


def local_rollout_settings(settings: Settings, *, production_url: str, canary_url: str) -> Settings:
    """``settings`` with the local router in front of the given services (free listen port).

    The configured local router's interface is kept (default 127.0.0.1).
    """
    configured = settings.rollout.router
    host = configured.listen_host if isinstance(configured, LocalRouterConfig) else "127.0.0.1"
    rollout = settings.rollout.model_copy(
        update={
            "router": LocalRouterConfig(listen_host=host, listen_port=0),
            "production_url": production_url,
            "canary_url": canary_url,
        }
    )
    return settings.model_copy(update={"rollout": rollout})


def run_local_canary(
    settings: Settings,
    *,
    registry: Registry,
    store: RolloutStore,
    state: RolloutState,
    rows: Sequence[Row],
    actor: str,
    traffic_rate_per_s: float | None = 40.0,
    traffic_support_size: int = 10,
    traffic_k: int = 20,
    timeout_s: float = 1800.0,
    poll_s: float = 0.5,
    on_end: Callable[[RolloutState], None] | None = None,
) -> LocalCanaryResult:
    """Serve production and canary locally, route generated traffic, run the controller.

    Args:
        settings: MetaRec settings (home, registry, Feast).
        registry: Open registry (the controller promotes through it).
        store: Rollout state store on the same database.
        state: The created rollout (its ``production_version`` must be set).
        rows: ``(user, item, rating)`` rows the traffic replays, in time order per user
            (:func:`~metarec.rollout.traffic.replay_rows`; empty: no traffic). A rating of
            None (implicit events) is sent unrated and counts for the online hit rate only.
        actor: Who the ledger names for the promotion.
        traffic_rate_per_s: Highest user visits (``/recommend`` + ``/feedback``) per second.
        traffic_support_size: Ratings (or positive events) of a user sent as the support set.
        traffic_k: Items each ``/recommend`` asks for (the list hits are counted in).
        timeout_s: Give up after this long; the rollout is then aborted (canary weight 0).
        poll_s: Controller reconcile period.
        on_end: The controller's end-of-rollout hook (reports, notifications).

    Returns:
        The final state and the traffic summary (service logs: ``<home>/rollouts/<id>/``).

    Raises:
        ServingModelError: A service did not start (its log tail is in the message).
    """
    _warn_on_mismatch(registry, state, rows)
    token = new_feedback_token()
    with contextlib.ExitStack() as stack:
        router, controller = _wire(
            settings, registry, store, state, stack, actor=actor, feedback_token=token
        )
        controller.on_end = on_end
        traffic = _start_traffic(
            router.url,
            rows,
            feedback_token=token,
            rate_per_s=traffic_rate_per_s,
            deadline_s=timeout_s,
            support_size=traffic_support_size,
            k=traffic_k,
        )
        try:
            final = _run_to_the_end(controller, store, state, poll_s=poll_s, timeout_s=timeout_s)
        finally:
            summary = None if traffic is None else traffic.stop()
    return LocalCanaryResult(state=final, traffic=summary)


def _warn_on_mismatch(registry: Registry, state: RolloutState, rows: Sequence[Row]) -> None:
    """Log when the replayed rows do not fit a version (its service refuses those users).

    A version that learnt from implicit events refuses rated support items and a rating
    version refuses unrated ones (400), so the generator skips the users routed to it and that
    side gets no feedback.
    """
    unrated = {row[2] is None for row in rows}
    if len(unrated) != 1:
        return  # no rows, or both kinds: nothing to say
    events = unrated.pop()
    for role, version in (("production", state.production_version), ("canary", state.version)):
        if version is None:
            continue
        ref = VersionRef(model=state.model, version=version)
        if registry.read_card(ref).predicts_ratings == events:
            log.warning(
                "the traffic replays %s but %s %s %s: its service will refuse those users, so "
                "it gets no feedback; replay a training set that fits both versions",
                "positive events without ratings" if events else "ratings",
                role,
                ref.tag,
                "predicts ratings" if events else "learnt from implicit events",
            )


def _wire(
    settings: Settings,
    registry: Registry,
    store: RolloutStore,
    state: RolloutState,
    stack: contextlib.ExitStack,
    *,
    actor: str,
    feedback_token: str,
) -> tuple[Router, RolloutController]:
    """Both services, the local router in front of them and the controller on that router.

    The services (taking feedback with ``feedback_token``) and the router are stopped when
    ``stack`` closes.
    """
    services = _start_services(settings, state, stack, feedback_token=feedback_token)
    wired = local_rollout_settings(
        settings, production_url=services["production"].url, canary_url=services["canary"].url
    )
    router, release = build_router(wired)
    stack.callback(release)
    return router, _controller(wired, registry, store, router, actor=actor)


def _start_traffic(
    url: str,
    rows: Sequence[Row],
    *,
    feedback_token: str,
    rate_per_s: float | None,
    deadline_s: float,
    support_size: int,
    k: int,
) -> TrafficGenerator | None:
    """Start replaying ``rows`` through the router at ``url`` (None: no rows, no traffic)."""
    if not rows:
        return None
    return TrafficGenerator(
        url=url,
        rows=rows,
        headers=feedback_headers(feedback_token),
        rate_per_s=rate_per_s,
        deadline_s=deadline_s,
        support_size=support_size,
        k=k,
    ).start()


def _controller(
    settings: Settings, registry: Registry, store: RolloutStore, router: Router, *, actor: str
) -> RolloutController:
    """The rollout controller on ``router``, reading the metrics ``settings`` wire to it."""
    return RolloutController(
        registry=registry,
        store=store,
        router=router,
        metrics=build_metrics(settings, router=router),
        actor=actor,
    )


def _start_services(
    settings: Settings, state: RolloutState, stack: contextlib.ExitStack, *, feedback_token: str
) -> dict[str, ServiceProcess]:
    """Both versions as ready ``bentoml serve`` processes (stopped when ``stack`` closes)."""
    log_dir = settings.paths.rollouts / state.id
    log_dir.mkdir(parents=True, exist_ok=True)
    services = {}
    for role, version in (("production", state.production_version), ("canary", state.version)):
        service = ServiceProcess(
            settings,
            version=str(version),
            extra_env=SERVICE_ENV,
            log_path=log_dir / f"{role}.log",
            feedback_token=feedback_token,
        )
        stack.callback(service.stop)
        services[role] = service.launch()  # both start at once, then wait for both
    for service in services.values():
        service.wait_ready()
    return services


def _run_to_the_end(
    controller: RolloutController,
    store: RolloutStore,
    state: RolloutState,
    *,
    poll_s: float,
    timeout_s: float,
) -> RolloutState:
    """Reconcile until the rollout ends; past ``timeout_s`` abort it (canary weight 0)."""
    final = controller.run_until_done(state.id, poll_s=poll_s, timeout_s=timeout_s)
    if not final.phase.terminal:
        store.request_abort(state.model)
        final = controller.reconcile(state.id)
    return final
