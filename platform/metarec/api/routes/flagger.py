"""Flagger webhooks: the registry follows the canary engine's verdict (:mod:`metarec.ops.flagger`).

Flagger sends ``{name, namespace, phase, checksum, metadata}`` and reads any 2xx as success.
It cannot add headers, so the request guard (:mod:`metarec.api.guard`) takes the token from
``Authorization: Bearer`` when present, else from ``metadata.token`` (401 otherwise, before the
body is parsed); the identity must hold the role ``flagger`` (403) and is the ledger's actor.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from metarec.api.deps import FLAGGER, Caller, Config, Notify, Reg
from metarec.api.schemas import FlaggerAnswer, FlaggerWebhook
from metarec.ops.flagger import (
    FAILED,
    HookOutcome,
    confirm_promotion,
    promote_canary,
    roll_back_canary,
    webhook_evidence,
)

router = APIRouter(prefix="/flagger", dependencies=FLAGGER, tags=["flagger"])
_DENIED: dict[int | str, dict[str, Any]] = {
    403: {"model": FlaggerAnswer, "description": "Not confirmed / no rollback wanted."},
    409: {"model": FlaggerAnswer, "description": "The registry refuses the move."},
}


def _answer(outcome: HookOutcome, *, denied: int) -> JSONResponse:
    """200 when Flagger should read success, else ``denied``, with the registry's reason."""
    info = outcome.version
    body = FlaggerAnswer(
        action=outcome.action,
        version=None if info is None else info.tag,
        stage=None if info is None else info.stage.value,
        reason=outcome.reason,
    )
    return JSONResponse(body.model_dump(), status_code=200 if outcome.accepted else denied)


@router.post("/confirm-promotion", response_model=FlaggerAnswer, responses=_DENIED)
def confirm(settings: Config, reg: Reg, payload: FlaggerWebhook) -> JSONResponse:
    """``pre-rollout`` / ``confirm-promotion`` hook: may the version under canary go on?

    200 when the registry would promote it (a passing gate decision, in staging), else 403,
    which Flagger reads as "not yet".
    """
    return _answer(confirm_promotion(settings, metadata=payload.metadata, registry=reg), denied=403)


@router.post("/promote", response_model=FlaggerAnswer, responses=_DENIED)
def promote(
    settings: Config, reg: Reg, caller: Caller, notifier: Notify, payload: FlaggerWebhook
) -> JSONResponse:
    """``post-rollout`` hook: after phase ``Succeeded`` the version becomes production.

    The caller's identity as actor, the webhook as evidence; idempotent; other phases are
    ignored (200); 409 when the registry refuses the version (archived, no passing gate
    decision).
    """
    outcome = promote_canary(
        settings,
        metadata=payload.metadata,
        phase=payload.phase,
        evidence=webhook_evidence(payload.model_dump(), hook="post-rollout"),
        actor=caller.name,
        registry=reg,
        notifier=notifier,
    )
    return _answer(outcome, denied=409)


@router.post("/rollback", response_model=FlaggerAnswer, responses=_DENIED)
def rollback(
    settings: Config, reg: Reg, caller: Caller, notifier: Notify, payload: FlaggerWebhook
) -> JSONResponse:
    """``post-rollout`` hook after phase ``Failed``: archive the canary version.

    Production is left as it is (409 when the canary version is the registry's production).
    As a ``rollback`` hook: 200 (roll back) only when the registry refuses the version, else 403.
    """
    failed = payload.phase == FAILED
    outcome = roll_back_canary(
        settings,
        metadata=payload.metadata,
        phase=payload.phase,
        evidence=webhook_evidence(
            payload.model_dump(), hook="post-rollout" if failed else "rollback"
        ),
        actor=caller.name,
        registry=reg,
        notifier=notifier,
    )
    return _answer(outcome, denied=409 if failed else 403)
