"""Pipeline component: the evaluation gate on one candidate artifact.

A thin, typed face over :func:`metarec.ops.register_candidate` (``register=False``: gate, and
record a rejection) for Prefect tasks and KFP components (which wrap it; this module imports
neither). The artifact and the training set are local paths or URIs on an object store
(``s3://…``, as the KFP pipeline passes them). It writes the decision as JSON beside the artifact
folder (``<artifact>.gate.json``, on the store for a URI; outside the folder so the artifact's
digest does not change) and returns small JSON-able values.
Idempotent: the same artifact, policy and production version give the same verdict. On rejection
it records the rejection in the ledger and raises :class:`metarec.errors.GateRejectedError`
naming the broken rules, so the pipeline stops before registration.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from metarec.components import component_settings
from metarec.errors import GateRejectedError
from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from metarec.gate.decision import GateDecision


class GateOutput(BaseModel):
    """The gate's verdict (JSON-able)."""

    model_config = ConfigDict(frozen=True)

    accepted: bool
    summary: str
    decision_path: str
    artifact_digest: str
    policy_name: str
    production_version: int | None
    broken_rules: list[str]


def decision_path_for(artifact: str | Path) -> Path | str:
    """Where the decision of ``artifact`` is written (beside the folder; a URI beside a URI)."""
    from metarec.ops import artifact_sibling

    return artifact_sibling(artifact, ".gate.json")


def gate_model(
    *,
    artifact: str,
    home: str | None = None,
    model: str | None = None,
    policy: str | None = None,
    actor: str = "pipeline",
    training_set: str | None = None,
    raise_on_reject: bool = True,
) -> GateOutput:
    """Decide whether ``artifact`` may be registered.

    Args:
        artifact: Candidate artifact folder (model.safetensors + model_card.json), or its URI.
        home: MetaRec home (default: the configured one).
        model: Registered model name (default: registry.model_name).
        policy: Gate policy YAML (default: registry.gate_policy, else the shipped default).
        actor: Who runs the gate (for the ledger entry of a rejection).
        training_set: The candidate's training set (a path or URI); when given, production is
            re-evaluated on the candidate's held-out users (else its stored metrics are used).
        raise_on_reject: Raise :class:`GateRejectedError` when rejected (default), else return
            the verdict with ``accepted=False``.

    Returns:
        The verdict and the path of the full decision JSON.

    Raises:
        GateRejectedError: The candidate broke at least one rule (all are listed).
    """
    from metarec.features.training_set import write_text
    from metarec.ops import notifications, register_candidate

    settings = component_settings(home)
    out = decision_path_for(artifact)
    outcome = register_candidate(
        settings,
        artifact=artifact,
        model=model or settings.registry.model_name,
        policy=Path(policy) if policy else None,
        training_set=training_set or None,
        actor=actor,
        register=False,
        on_decision=lambda decision: write_text(out, decision.model_dump_json(indent=2)),
        links={"decision": notifications.link(out)},
    )
    decision = outcome.decision
    if not decision.accepted and raise_on_reject:
        raise GateRejectedError(
            f"The evaluation gate rejected {artifact}: {decision.summary()}.",
            fix=f"see every number in {out}; improve the candidate or review the gate policy.",
        )
    return _output(decision, out)


def _output(decision: GateDecision, path: Path | str) -> GateOutput:
    return GateOutput(
        accepted=decision.accepted,
        summary=decision.summary(),
        decision_path=str(path),
        artifact_digest=decision.artifact_digest,
        policy_name=decision.policy_name,
        production_version=decision.production_version,
        broken_rules=sorted({check.rule for check in decision.broken}),
    )
