"""Pipeline component: roll a registered staging version out as a canary, then promote it.

A thin, typed face over :mod:`metarec.rollout` for Prefect tasks and KFP components (this module
imports neither). Where it runs depends on ``rollout.router``:

* ``local`` (the embedded default): the production and canary versions are served by two real
  ``bentoml serve`` processes behind the local weighted router; generated traffic replays
  ratings of the training set as predictions and feedback; the controller runs here.
* ``http`` / ``gateway-api`` (a cluster): the rollout is created in the registry database and
  the rollout controller Deployment carries it out under real traffic; this waits for the end.

With no production version yet there is nothing to compare a canary with: the first version is
promoted directly (as Flagger does on a first deployment) and the ledger says so.

Idempotent: a version already in production returns ``already-production``; an active rollout
of the same version (e.g. a retried task) is resumed, never duplicated.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from metarec.components import component_settings
from metarec.errors import RolloutFailedError
from pydantic import BaseModel, ConfigDict, computed_field

Outcome = Literal["promoted", "bootstrapped", "already-production", "rolled-back", "aborted"]
BOOTSTRAP_REASON = "first production version: no incumbent to run a canary against"


class CanaryOutput(BaseModel):
    """How the rollout ended (JSON-able)."""

    model_config = ConfigDict(frozen=True)

    model: str
    version: int
    tag: str
    outcome: Outcome
    reason: str
    production_before: int | None
    production_after: int | None
    rollout_id: str | None = None
    report_html: str | None = None
    report_png: str | None = None
    online_mae: dict[str, float | None] = {}
    traffic: dict[str, Any] | None = None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def promoted(self) -> bool:
        """Whether this call put the version in production (canary passed, or first version)."""
        return self.outcome in ("promoted", "bootstrapped")


def canary_rollout(
    *,
    version: int,
    home: str | None = None,
    model: str | None = None,
    spec: dict[str, Any] | None = None,
    training_set: str | None = None,
    generate_traffic: bool = True,
    traffic_rate_per_s: float | None = 40.0,
    timeout_s: float = 1800.0,
    actor: str = "pipeline",
    raise_on_failure: bool = True,
) -> CanaryOutput:
    """Canary ``version`` against production and promote it when every step passes.

    Args:
        version: The registered staging version.
        home: MetaRec home (default: the configured one).
        model: Registered model name (default: registry.model_name).
        spec: Rollout steps and thresholds (``RolloutSpec`` fields; default: its defaults).
        training_set: Ratings the local traffic replays (default: the newest training set).
        generate_traffic: Locally, replay ratings through the router (off: bring your own).
        traffic_rate_per_s: Highest generated predictions per second.
        timeout_s: Give up after this long; the canary weight then goes back to 0.
        actor: Who the ledger names.
        raise_on_failure: Raise :class:`RolloutFailedError` unless promoted (default).

    Returns:
        The outcome, the verdict's online MAE, the report paths and the traffic counts.

    Raises:
        RolloutFailedError: The canary was rolled back, aborted or timed out.
        RolloutError: The version is not in staging, or another rollout is active.
    """
    from metarec.registry import Registry, Stage, VersionRef
    from metarec.rollout.store import RolloutStore
    from metarec.rollout.types import RolloutSpec

    settings = component_settings(home)
    ref = VersionRef(model=model or settings.registry.model_name, version=int(version))
    with Registry.open(settings) as registry:
        info = registry.get_version(ref)
        production = registry.production_version(ref.model)
        identity = {"model": ref.model, "version": ref.version, "tag": ref.tag}
        if info.stage is Stage.PRODUCTION:
            return CanaryOutput(
                **identity,
                outcome="already-production",
                reason="already in production",
                production_before=production,
                production_after=production,
            )
        if production is None:
            registry.promote(ref, actor=actor, reason=BOOTSTRAP_REASON, expected_production=None)
            return CanaryOutput(
                **identity,
                outcome="bootstrapped",
                reason=BOOTSTRAP_REASON,
                production_before=None,
                production_after=ref.version,
            )
        store = RolloutStore(engine=registry.engine)
        state = _resume_or_start(registry, store, ref, RolloutSpec(**(spec or {})), actor)
        final, traffic = _carry_out(
            settings,
            registry,
            store,
            state,
            rows=lambda: _replay_rows(settings, training_set) if generate_traffic else [],
            traffic_rate_per_s=traffic_rate_per_s,
            timeout_s=timeout_s,
            actor=actor,
        )
        reports = _write_reports(settings, store, final)
        output = _finished(
            identity,
            final,
            before=production,
            after=registry.production_version(ref.model),
            reports=reports,
            traffic=traffic,
        )
    if raise_on_failure and output.outcome in ("rolled-back", "aborted"):
        raise RolloutFailedError(
            f"The canary of {ref.tag} was not promoted ({output.outcome}): {output.reason}.",
            fix=f"read the rollout report {output.report_html}; production stays v{production}.",
        )
    return output


def _carry_out(
    settings: Any,
    registry: Any,
    store: Any,
    state: Any,
    *,
    rows: Callable[[], list[tuple[int, int, float]]],
    traffic_rate_per_s: float | None,
    timeout_s: float,
    actor: str,
) -> tuple[Any, Any]:
    """Run the rollout here (router ``local``) or wait for the cluster's controller.

    Locally the generated traffic replays ``rows()`` (read only then: a cluster needs none).

    Returns:
        The final (or timed-out) state and, locally, the generated traffic's summary.
    """
    if settings.rollout.router == "local":
        from metarec.serving.local_canary import run_local_canary

        result = run_local_canary(
            settings,
            registry=registry,
            store=store,
            state=state,
            rows=rows(),
            traffic_rate_per_s=traffic_rate_per_s,
            timeout_s=timeout_s,
            actor=actor,
        )
        return result.state, result.traffic
    from metarec.rollout.controller import wait_for_rollout

    return wait_for_rollout(store, state.id, timeout_s=timeout_s), None


def _resume_or_start(registry: Any, store: Any, ref: Any, spec: Any, actor: str) -> Any:
    from metarec.rollout.controller import start_rollout

    for state in store.active(ref.model):
        if state.version == ref.version:
            return state
    return start_rollout(registry=registry, store=store, ref=ref, spec=spec, actor=actor)


def _replay_rows(settings: Any, training_set: str | None) -> list[tuple[int, int, float]]:
    from metarec.features.training_set import newest_training_set
    from metarec.rollout.traffic import replay_rows

    return replay_rows(Path(training_set) if training_set else newest_training_set(settings))


def _write_reports(settings: Any, store: Any, state: Any) -> dict[str, str]:
    from metarec.rollout.report import write_report

    events = store.events(state.id)
    folder = settings.paths.rollouts / state.id
    return {
        suffix: str(write_report(state, events, folder / f"report.{suffix}"))
        for suffix in ("html", "png")
    }


def _finished(
    identity: dict[str, Any],
    state: Any,
    *,
    before: int | None,
    after: int | None,
    reports: dict[str, str],
    traffic: Any,
) -> CanaryOutput:
    outcome: Outcome = {"Succeeded": "promoted", "Aborted": "aborted"}.get(
        state.phase.value, "rolled-back"
    )
    online_mae: dict[str, float | None] = {"production": state.production_mae, "canary": None}
    if state.verdict is not None:  # the newest measured values
        for role, known in online_mae.items():
            latest = state.verdict.latest(role, "online_mae")
            online_mae[role] = known if latest is None else latest
    return CanaryOutput(
        **identity,
        outcome=outcome,
        reason=state.message,
        production_before=before,
        production_after=after,
        rollout_id=state.id,
        report_html=reports["html"],
        report_png=reports["png"],
        online_mae=online_mae,
        traffic=None
        if traffic is None
        else {
            "predictions": traffic.predictions,
            "feedback": traffic.feedback,
            "server_errors": traffic.server_errors,
            "by_backend": traffic.by_backend,
            "duration_s": traffic.duration_s,
        },
    )
