"""Gate a candidate, then register it in staging or record the rejection in the ledger.

The one implementation behind ``metarec gate``, ``metarec models register``, ``POST /gate``,
``POST /models/{model}/versions`` and the ``gate_model`` pipeline component. The callers word
a rejection their own way (an exit code, an HTTP status, an exception naming the decision
file); this module returns the outcome and raises only the errors of the steps it runs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import NamedTuple

from pydantic import BaseModel, ConfigDict

from metarec.config import Settings
from metarec.features.training_set import Location, as_location, read_manifest
from metarec.gate.decision import GateDecision
from metarec.gate.policy import load_policy
from metarec.gate.run import (
    Evaluator,
    RankingEvaluator,
    gate_artifact,
    training_set_evaluator,
    training_set_ranking_evaluator,
)
from metarec.gate.verification import Reevaluation
from metarec.ops import notifications
from metarec.ops._registry import registry_session
from metarec.ops.locations import local_artifact
from metarec.registry import Registry, VersionInfo
from metarec.registry.artifacts import inspect_artifact
from metarec.registry.registration import check_decision

DEFAULT_REASON = "registered after passing the evaluation gate"


class Rejection(BaseModel):
    """Where a rejection was recorded: a ``reject`` entry in the ledger of ``model``."""

    model_config = ConfigDict(frozen=True)

    model: str
    artifact: str
    artifact_digest: str
    actor: str


class RegistrationOutcome(BaseModel):
    """What :func:`register_candidate` did: the decision, then the version or the rejection."""

    model_config = ConfigDict(frozen=True)

    decision: GateDecision
    registered: VersionInfo | None = None
    rejection: Rejection | None = None

    @property
    def accepted(self) -> bool:
        """Whether the gate accepted the candidate."""
        return self.decision.accepted


class _Evaluators(NamedTuple):
    """Production's evaluators and the candidate's re-evaluation (None: not verified)."""

    evaluate: Evaluator | None
    evaluate_ranking: RankingEvaluator | None
    reevaluation: Reevaluation | None


def _evaluators(
    artifact: Path,
    training_set: Location | None,
    evaluate: Evaluator | None,
    evaluate_ranking: RankingEvaluator | None,
) -> _Evaluators:
    """Re-evaluate production, and the candidate's card, on the candidate's training set.

    With a training set, the same evaluators re-evaluate production on the candidate's held-out
    users and the candidate itself (its card's numbers are verified). A candidate trained on
    implicit events gets no rating evaluator: its training set has no ratings and the candidate
    no rating metrics (both rankings are still re-evaluated). Without one, the candidate's
    numbers are the card's, unverified (the decision says so).
    """
    if training_set is None:
        return _Evaluators(evaluate, evaluate_ranking, None)
    if evaluate is not None or evaluate_ranking is not None:
        raise ValueError("pass either a training set or evaluators, not both")
    card = inspect_artifact(artifact).card
    where = as_location(training_set)  # a URI is read through fsspec, never made a Path
    rating = training_set_evaluator(where, like=card.metrics) if card.predicts_ratings else None
    ranking = training_set_ranking_evaluator(where, like=card.ranking)
    reevaluation = Reevaluation(
        training_set=str(training_set),
        fingerprint=read_manifest(where).fingerprint,
        evaluate=rating,
        evaluate_ranking=ranking,
    )
    return _Evaluators(rating, ranking, reevaluation)


def gate_candidate(
    settings: Settings,
    *,
    artifact: Location,
    model: str,
    registry: Registry | None = None,
    policy: Path | None = None,
    training_set: Location | None = None,
    evaluate: Evaluator | None = None,
    evaluate_ranking: RankingEvaluator | None = None,
) -> GateDecision:
    """Run the evaluation gate on ``artifact``; nothing is stored.

    Args:
        settings: MetaRec settings (the default gate policy).
        artifact: Candidate artifact folder (weights + model card), or its URI (fetched into
            a temporary folder for the gate).
        model: Registered model the candidate is for.
        registry: An open registry, for production's version and metrics (default: open the
            configured one and close it after).
        policy: Gate policy YAML (default: ``registry.gate_policy``, else the shipped one).
        training_set: The candidate's training set: production is then re-evaluated on the
            candidate's held-out users, and the candidate's card numbers are verified by a
            re-evaluation on them (default: production's stored metrics are used, and the
            candidate's are the card's, unverified).
        evaluate: Re-evaluates production's rating metrics (instead of ``training_set``).
        evaluate_ranking: Re-evaluates production's ranking table (instead of
            ``training_set``).

    Returns:
        The gate's decision, every rule with its numbers.
    """
    with local_artifact(artifact) as folder:
        evaluators = _evaluators(folder, training_set, evaluate, evaluate_ranking)
        with registry_session(settings, registry) as current:
            return _gate(settings, folder, model, current, policy, evaluators)


def _gate(
    settings: Settings,
    artifact: Path,
    model: str,
    registry: Registry,
    policy: Path | None,
    evaluators: _Evaluators,
) -> GateDecision:
    return gate_artifact(
        artifact,
        policy=load_policy(policy or settings.registry.gate_policy),
        model=model,
        registry=registry,
        evaluate=evaluators.evaluate,
        evaluate_ranking=evaluators.evaluate_ranking,
        reevaluation=evaluators.reevaluation,
    )


def register_candidate(
    settings: Settings,
    *,
    artifact: Location,
    model: str,
    policy: Path | None,
    training_set: Location | None,
    actor: str,
    reason: str = DEFAULT_REASON,
    register: bool = True,
    registry: Registry | None = None,
    evaluate: Evaluator | None = None,
    evaluate_ranking: RankingEvaluator | None = None,
    on_decision: Callable[[GateDecision], None] | None = None,
    links: Mapping[str, str] | None = None,
) -> RegistrationOutcome:
    """Gate ``artifact``; register it in staging if accepted, else record the rejection.

    Args:
        settings: MetaRec settings (registry location, default gate policy).
        artifact: Candidate artifact folder (weights + model card), or its URI (fetched into a
            temporary folder; a rejection names the URI).
        model: Registered model the candidate is for.
        policy: Gate policy YAML (default: ``registry.gate_policy``, else the shipped one).
        training_set: The candidate's training set, a path or URI (see
            :func:`gate_candidate`).
        actor: Who acts (kept in the ledger).
        reason: Why (kept in the ledger with the registration).
        register: ``False`` stops after the gate: a rejection is still recorded, an accepted
            candidate is left for a later registration step (the pipeline's gate step).
        registry: An open registry (default: open the configured one and close it after).
        evaluate: Re-evaluates production's rating metrics (instead of ``training_set``).
        evaluate_ranking: Re-evaluates production's ranking table (instead of
            ``training_set``).
        on_decision: Called with the decision as soon as it is made, before anything is
            written (a face prints it; a component writes it to a file).
        links: Named links a rejection's notification carries besides the artifact (the
            decision file a component wrote).

    Returns:
        The decision with the registered version (accepted, ``register=True``) or where the
        rejection was recorded (rejected).
    """
    with local_artifact(artifact) as folder:
        evaluators = _evaluators(folder, training_set, evaluate, evaluate_ranking)
        with registry_session(settings, registry) as current:
            decision = _gate(settings, folder, model, current, policy, evaluators)
            if on_decision is not None:
                on_decision(decision)
            if not decision.accepted:
                rejection = _record_rejection(
                    current, decision, model=model, artifact=artifact, actor=actor
                )
                _notify_rejection(settings, decision, rejection, links or {})
                return RegistrationOutcome(decision=decision, rejection=rejection)
            if not register:
                return RegistrationOutcome(decision=decision)
            info = _register(current, folder, artifact, model, decision, actor, reason)
            return RegistrationOutcome(decision=decision, registered=info)


def _register(
    registry: Registry,
    folder: Path,
    artifact: Location,
    model: str,
    decision: GateDecision,
    actor: str,
    reason: str,
) -> VersionInfo:
    """Register ``folder``, the local form of ``artifact``: the ledger's source is ``artifact``.

    For a URI, ``folder`` is a temporary copy that is gone after the call; the version's source
    is where the artifact really is (``s3://…``), never that copy.
    """
    return registry.register(
        folder,
        model=model,
        gate_decision=decision,
        actor=actor,
        reason=reason,
        source=str(artifact),
    )


def _record_rejection(
    registry: Registry, decision: GateDecision, *, model: str, artifact: Location, actor: str
) -> Rejection:
    """Write the ``reject`` ledger entry of ``decision`` and say where it is."""
    registry.record_rejection(
        model=model, gate_decision=decision, actor=actor, artifact=str(artifact)
    )
    return Rejection(
        model=model, artifact=str(artifact), artifact_digest=decision.artifact_digest, actor=actor
    )


def _notify_rejection(
    settings: Settings, decision: GateDecision, rejection: Rejection, links: Mapping[str, str]
) -> None:
    """Tell ``notifications.webhooks`` of the rejection (waits up to ``flush_timeout_s``)."""
    notification = notifications.gate_rejected(
        decision, model=rejection.model, artifact=rejection.artifact, links=links
    )
    notifications.send(settings, notification)


class Registered(BaseModel):
    """What :func:`register_gated` did: the version, and whether it was there already."""

    model_config = ConfigDict(frozen=True)

    version: VersionInfo
    reused: bool


def register_gated(
    settings: Settings,
    *,
    artifact: Location,
    model: str,
    decision: GateDecision,
    actor: str,
    reason: str = DEFAULT_REASON,
    registry: Registry | None = None,
) -> Registered:
    """Register an artifact the gate already accepted (the pipeline's step after the gate).

    Idempotent: an artifact already registered under ``model`` (same digest) is returned as it
    is and nothing is written.

    Args:
        settings: MetaRec settings (registry location).
        artifact: The gated artifact folder, or its URI (fetched into a temporary folder, then
            copied into the registry's artifact store).
        model: Registered model name.
        decision: The gate's decision on ``artifact``.
        actor: Who registers (kept in the ledger).
        reason: Why (kept in the ledger).
        registry: An open registry (default: open the configured one for this call).

    Returns:
        The registered (or already registered) version.

    Raises:
        GateRejectedError: The decision rejected the candidate.
        ArtifactError: The decision was made for another artifact, or the folder is invalid.
    """
    with local_artifact(artifact) as folder, registry_session(settings, registry) as current:
        manifest = inspect_artifact(folder)
        existing = current.find_by_digest(model, manifest.digest)
        if existing is not None:
            return Registered(version=existing, reused=True)
        check_decision(decision, manifest=manifest, artifact_dir=artifact)  # names the URI
        info = _register(current, folder, artifact, model, decision, actor, reason)
    return Registered(version=info, reused=False)
