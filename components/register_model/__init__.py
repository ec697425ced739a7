"""Pipeline component: register a gated artifact as a staging version.

A thin, typed face over :func:`metarec.ops.register_gated` for Prefect tasks and KFP
components (this module imports neither). The artifact and the decision are local paths or URIs
on an object store (``s3://…``, as the KFP pipeline passes them): an artifact at a URI is fetched
into a temporary folder and copied into the registry's artifact store. Idempotent: registering an
artifact that is already registered returns the existing version (``reused=True``) and writes
nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from metarec.components import component_settings
from metarec.errors import GatePolicyError
from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from metarec.gate.decision import GateDecision


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
        artifact: Artifact folder (model.safetensors + model_card.json), or its URI.
        decision: The gate decision JSON written by ``gate_model`` (a path or URI).
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
    from metarec.ops import register_gated

    settings = component_settings(home)
    done = register_gated(
        settings,
        artifact=artifact,
        model=model or settings.registry.model_name,
        decision=_read_decision(decision),
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


def _read_decision(decision: str) -> GateDecision:
    """The gate decision at ``decision`` (a path or URI).

    Raises:
        GatePolicyError: There is no file there, or it is not a decision.
    """
    from metarec.features.training_set import read_text
    from metarec.gate.decision import GateDecision
    from pydantic import ValidationError

    try:
        text = read_text(decision)
    except OSError as exc:
        raise _bad_decision(decision, f"unreadable ({exc})") from exc
    if text is None:
        raise _bad_decision(decision, "missing")
    try:
        return GateDecision.model_validate_json(text)
    except ValidationError as exc:
        raise _bad_decision(decision, f"not a decision ({exc})") from exc


def _bad_decision(decision: str, problem: str) -> GatePolicyError:
    return GatePolicyError(
        f"Gate decision {decision} is {problem}.",
        fix="pass the decision_path that gate_model returned.",
    )
