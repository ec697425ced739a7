"""Pipeline component: register a gated artifact as a staging version.

A thin, typed face over :func:`metarec.ops.register_gated` for Prefect tasks and KFP
components (this module imports neither). Idempotent: registering an artifact that is already
registered returns the existing version (``reused=True``) and writes nothing.
"""

from __future__ import annotations

from pathlib import Path

from metarec.components import component_settings
from metarec.errors import GatePolicyError
from pydantic import BaseModel, ConfigDict


class RegisterOutput(BaseModel):
    """The registered version (JSON-able)."""

    model_config = ConfigDict(frozen=True)

    model: str
    version: int
    tag: str
    stage: str
    digest: str
    artifact_uri: str
    bento_tag: str | None
    reused: bool


def register_model(
    *,
    artifact: str,
    decision: str,
    home: str | None = None,
    model: str | None = None,
    actor: str = "pipeline",
    reason: str = "registered by the retraining pipeline after passing the evaluation gate",
) -> RegisterOutput:
    """Register ``artifact`` in staging, with the gate decision that accepted it.

    Args:
        artifact: Artifact folder (model.safetensors + model_card.json).
        decision: The gate decision JSON written by ``gate_model``.
        home: MetaRec home (default: the configured one).
        model: Registered model name (default: registry.model_name).
        actor: Who registers (for the ledger).
        reason: Why (for the ledger).

    Returns:
        The registered (or already registered) version.

    Raises:
        GateRejectedError: The decision rejected the candidate.
        ArtifactError: The decision was made for another artifact, or the folder is invalid.
    """
    from metarec.gate.decision import GateDecision
    from metarec.ops import register_gated
    from pydantic import ValidationError

    settings = component_settings(home)
    try:
        gate_decision = GateDecision.model_validate_json(Path(decision).read_text())
    except (OSError, ValidationError) as exc:
        raise GatePolicyError(
            f"Gate decision {decision} is missing or not a decision ({exc}).",
            fix="pass the decision_path that gate_model returned.",
        ) from exc
    done = register_gated(
        settings,
        artifact=Path(artifact),
        model=model or settings.registry.model_name,
        decision=gate_decision,
        actor=actor,
        reason=reason,
    )
    info = done.version
    return RegisterOutput(
        model=info.model,
        version=info.version,
        tag=info.tag,
        stage=info.stage.value,
        digest=info.digest,
        artifact_uri=info.artifact_uri,
        bento_tag=info.bento_tag,
        reused=done.reused,
    )
