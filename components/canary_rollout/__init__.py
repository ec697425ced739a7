"""Pipeline component: roll a registered staging version out as a canary, then promote it.

A thin, typed face over :func:`metarec.ops.release_canary` for Prefect tasks and KFP components
(this module imports neither). Where it runs depends on ``rollout.router.kind``:

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

from typing import TYPE_CHECKING, Any

from metarec.components import component_settings
from metarec.errors import RolloutFailedError
from metarec.ops.canary_spec import BOOTSTRAP_REASON, FAILED_OUTCOMES, PROMOTED_OUTCOMES, Outcome
from pydantic import BaseModel, ConfigDict, computed_field

if TYPE_CHECKING:
    from metarec.ops.canary import CanaryOutcome
    from metarec.rollout.traffic import TrafficSummary

__all__ = ["BOOTSTRAP_REASON", "CanaryOutput", "canary_rollout"]


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
    online_hit_rate: dict[str, float | None] = {}
    traffic: dict[str, Any] | None = None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def promoted(self) -> bool:
        """Whether this call put the version in production (canary passed, or first version)."""
        return self.outcome in PROMOTED_OUTCOMES


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
        training_set: Ratings the local traffic replays, a path or URI (default: the newest
            training set).
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
    from metarec.ops import release_canary
    from metarec.registry import VersionRef
    from metarec.rollout.types import RolloutSpec

    settings = component_settings(home)
    ref = VersionRef(model=model or settings.registry.model_name, version=int(version))
    outcome = release_canary(
        settings,
        ref=ref,
        spec=RolloutSpec(**(spec or {})),
        actor=actor,
        rows=lambda: _replay_rows(settings, training_set) if generate_traffic else [],
        traffic_rate_per_s=traffic_rate_per_s,
        timeout_s=timeout_s,
    )
    output = _output(outcome)
    if raise_on_failure and output.outcome in FAILED_OUTCOMES:
        raise RolloutFailedError(
            f"The canary of {ref.tag} was not promoted ({output.outcome}): {output.reason}.",
            fix=f"read the rollout report {output.report_html}; production stays "
            f"v{output.production_before}.",
        )
    return output


def _replay_rows(settings: Any, training_set: str | None) -> list[tuple[int, int, float | None]]:
    from metarec.features.training_set import as_location, newest_training_set
    from metarec.rollout.traffic import replay_rows

    # A URI stays a URI (read through fsspec): Path("s3://b/x") would be the local "s3:/b/x".
    where = as_location(training_set) if training_set else newest_training_set(settings)
    return replay_rows(where)


def _output(outcome: CanaryOutcome) -> CanaryOutput:
    reports = {suffix: str(path) for suffix, path in outcome.reports.items()}
    return CanaryOutput(
        model=outcome.ref.model,
        version=outcome.ref.version,
        tag=outcome.ref.tag,
        outcome=outcome.outcome,
        reason=outcome.reason,
        production_before=outcome.production_before,
        production_after=outcome.production_after,
        rollout_id=None if outcome.state is None else outcome.state.id,
        report_html=reports.get("html"),
        report_png=reports.get("png"),
        online_mae=outcome.online_mae,
        online_hit_rate=outcome.online_hit_rate,
        traffic=None if outcome.traffic is None else _traffic(outcome.traffic),
    )


def _traffic(summary: TrafficSummary) -> dict[str, Any]:
    return {
        "predictions": summary.predictions,
        "feedback": summary.feedback,
        "server_errors": summary.server_errors,
        "by_backend": summary.by_backend,
        "duration_s": summary.duration_s,
    }
