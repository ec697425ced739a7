"""Candidates: the evaluation gate and registration (:mod:`metarec.ops.register`).

Role ``deployer``; the ledger's actor is the caller's identity.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Query

from metarec.api.deps import DEPLOY, Caller, Config, Evaluation, ModelName, Reg
from metarec.api.schemas import GateRequest, RegisterRequest
from metarec.errors import GateRejectedError
from metarec.gate.decision import GateDecision
from metarec.ops.register import gate_candidate, register_candidate
from metarec.registry.types import MODEL_NAME_PATTERN, VersionInfo

router = APIRouter(dependencies=DEPLOY)


@router.post("/gate", tags=["gate"])
def gate(
    settings: Config,
    reg: Reg,
    evaluators: Evaluation,
    body: GateRequest,
    model: Annotated[
        str | None,
        Query(pattern=MODEL_NAME_PATTERN, description="Default: registry.model_name."),
    ] = None,
) -> GateDecision:
    """Run the evaluation gate on an artifact folder on the server; nothing is stored."""
    return gate_candidate(
        settings,
        artifact=Path(body.artifact),
        model=model or settings.registry.model_name,
        registry=reg,
        evaluate=evaluators.rating,
        evaluate_ranking=evaluators.ranking,
    )


@router.post("/models/{model}/versions", status_code=201, tags=["models"])
def register(
    settings: Config,
    reg: Reg,
    evaluators: Evaluation,
    caller: Caller,
    model: ModelName,
    body: RegisterRequest,
) -> VersionInfo:
    """Gate an artifact folder on the server, then register it as a staging version.

    A rejected candidate is not registered: the answer is 422 with the decision, and the
    rejection is recorded in the ledger. The ledger's actor is the caller's identity.
    """
    outcome = register_candidate(
        settings,
        artifact=Path(body.artifact),
        model=model,
        policy=None,
        training_set=None,
        actor=caller.name,
        reason=body.reason,
        registry=reg,
        evaluate=evaluators.rating,
        evaluate_ranking=evaluators.ranking,
    )
    if outcome.registered is None:
        error = GateRejectedError(
            f"The evaluation gate rejected {body.artifact}: {outcome.decision.summary()}.",
            fix="improve the candidate (or review the gate policy).",
        )
        error.decision = outcome.decision.model_dump(mode="json")  # type: ignore[attr-defined]
        raise error
    return outcome.registered
