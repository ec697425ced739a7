"""Request and error bodies of the control-plane API."""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

# Printable text without NUL or other control characters (databases refuse NUL).
TEXT = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$"


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")

    actor: str | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        pattern=TEXT,
        deprecated=True,
        description="Deprecated and ignored: the ledger's actor is the identity of the bearer "
        "token. Name a run or a person in `reason` or `evidence` instead.",
    )


class RegisterRequest(_Request):
    """Gate an artifact folder on the server and register it as a staging version."""

    artifact: str = Field(
        min_length=1,
        max_length=4096,
        pattern=TEXT,
        description="Artifact folder on the server (model.safetensors + model_card.json).",
    )
    reason: str = Field(
        default="registered after passing the evaluation gate",
        min_length=1,
        max_length=4000,
        pattern=TEXT,
    )


class GateRequest(BaseModel):
    """Run the evaluation gate on an artifact folder on the server (nothing is stored)."""

    model_config = ConfigDict(extra="forbid")

    artifact: str = Field(min_length=1, max_length=4096, pattern=TEXT)


class TransitionRequest(_Request):
    """A stage transition: promote, archive or rollback."""

    reason: str = Field(
        min_length=1, max_length=4000, pattern=TEXT, description="Why (kept in the ledger)."
    )
    evidence: dict[str, Any] = Field(
        default_factory=dict,
        max_length=64,
        description="JSON evidence kept in the ledger (gate report, canary verdict).",
    )
    expected_production: int | None = Field(
        default=None,
        ge=0,
        le=1_000_000_000,
        description="The production version this decision is based on (0: none). If another "
        "change moved production meanwhile, the call fails with 409. Absent: no check "
        "beyond the call's own duration.",
    )

    @field_validator("evidence")
    @classmethod
    def _finite_json(cls, value: dict[str, Any]) -> dict[str, Any]:
        try:
            encoded = json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ValueError("evidence must be plain JSON without NaN or Infinity") from exc
        if len(encoded) > 1_000_000:
            raise ValueError("evidence must be at most 1 MB of JSON")
        return value


class ErrorBody(BaseModel):
    """Every deliberate error: what is wrong and the fix."""

    error: str
    problem: str
    fix: str
    detail: dict[str, Any] | None = None


class Health(BaseModel):
    """Liveness/readiness answer."""

    status: str
    database: str


class FlaggerWebhook(BaseModel):
    """The body of every Flagger webhook call (``CanaryWebhookPayload`` of Flagger v1beta1).

    Fields Flagger may add later are ignored. ``metadata`` is the webhook's ``metadata`` from
    the ``Canary`` spec: ``version`` names the version under canary, ``model`` the registered
    model (default ``registry.model_name``) and ``token`` the token of a ``flagger`` identity
    (Flagger cannot send an ``Authorization`` header); it is never written to the ledger.
    """

    model_config = ConfigDict(extra="ignore")

    name: str = Field(min_length=1, max_length=253, pattern=TEXT, description="Canary name.")
    namespace: str = Field(
        min_length=1, max_length=253, pattern=TEXT, description="Canary namespace."
    )
    phase: str = Field(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z]+$",
        description="Canary phase (Progressing, WaitingPromotion, Succeeded, Failed, …).",
    )
    checksum: str = Field(
        default="", max_length=256, pattern=TEXT, description="Hash of the canary's spec."
    )
    metadata: dict[
        Annotated[str, Field(max_length=256, pattern=TEXT)],
        Annotated[str, Field(max_length=4096, pattern=TEXT)],
    ] = Field(default_factory=dict, max_length=64, description="The webhook's metadata.")


class FlaggerAnswer(BaseModel):
    """What the registry did or decided for a Flagger webhook."""

    action: str = Field(description="confirmed, denied, promoted, archived, ignored, …")
    version: str | None = Field(description="The version under canary (model:vN), if found.")
    stage: str | None = Field(description="Its registry stage now, if found.")
    reason: str
