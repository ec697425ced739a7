"""Stage transitions: promote, archive, roll back (:mod:`metarec.ops.transitions`).

Role ``deployer`` or ``controller``; the ledger's actor is the caller's identity (a body's
``actor`` is ignored).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from metarec.api.deps import TRANSITION, Caller, Config, ModelName, Reg, VersionNumber
from metarec.api.schemas import TransitionRequest
from metarec.ops.transitions import archive as archive_version
from metarec.ops.transitions import promote as promote_version
from metarec.ops.transitions import rollback as roll_back
from metarec.registry import UNSET
from metarec.registry.types import VersionInfo, VersionRef

router = APIRouter(dependencies=TRANSITION, tags=["models"])


def _expected(body: TransitionRequest) -> Any:
    """``expected_production``: absent → the one in production now; 0 → none."""
    if body.expected_production is None:
        return UNSET
    return body.expected_production or None


@router.post("/models/{model}/versions/{version}/promote")
def promote(
    settings: Config,
    reg: Reg,
    caller: Caller,
    model: ModelName,
    version: VersionNumber,
    body: TransitionRequest,
) -> VersionInfo:
    """Promote a version to production; the previous production version is archived."""
    return promote_version(
        settings,
        ref=VersionRef(model=model, version=version),
        actor=caller.name,
        reason=body.reason,
        evidence=body.evidence,
        expected_production=_expected(body),
        registry=reg,
    ).version


@router.post("/models/{model}/versions/{version}/archive")
def archive(
    settings: Config,
    reg: Reg,
    caller: Caller,
    model: ModelName,
    version: VersionNumber,
    body: TransitionRequest,
) -> VersionInfo:
    """Archive a staging or production version."""
    return archive_version(
        settings,
        ref=VersionRef(model=model, version=version),
        actor=caller.name,
        reason=body.reason,
        evidence=body.evidence,
        registry=reg,
    ).version


@router.post("/models/{model}/rollback")
def rollback(
    settings: Config, reg: Reg, caller: Caller, model: ModelName, body: TransitionRequest
) -> VersionInfo:
    """Promote the previous production version again."""
    return roll_back(
        settings,
        model=model,
        actor=caller.name,
        reason=body.reason,
        evidence=body.evidence,
        expected_production=_expected(body),
        registry=reg,
    ).version
