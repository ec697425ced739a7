"""Plain, JSON-able views of registry records, shared by the CLI, the API and components."""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

from metarec.errors import VersionNotFoundError

MODEL_NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,62}$"
_REF = re.compile(r"^(?:(?P<model>[a-z0-9][a-z0-9._-]{0,62}):)?v?(?P<version>[0-9]{1,9})$")


class Stage(StrEnum):
    """Lifecycle stages of a model version."""

    STAGING = "staging"
    PRODUCTION = "production"
    ARCHIVED = "archived"


class Action(StrEnum):
    """What a ledger entry records."""

    REGISTER = "register"
    REJECT = "reject"
    PROMOTE = "promote"
    ROLLBACK = "rollback"
    ARCHIVE = "archive"


class VersionRef(BaseModel):
    """A model name and version number (``metarec:v3``)."""

    model_config = ConfigDict(frozen=True)

    model: str = Field(pattern=MODEL_NAME_PATTERN)
    version: int = Field(ge=1)

    @property
    def tag(self) -> str:
        """``<model>:v<version>``, also the BentoML tag."""
        return f"{self.model}:v{self.version}"

    @classmethod
    def parse(cls, text: str, *, default_model: str) -> VersionRef:
        """Parse ``3``, ``v3``, ``name:3`` or ``name:v3``.

        Raises:
            VersionNotFoundError: The text is not a version reference.
        """
        match = _REF.match(text.strip())
        if match is None:
            raise VersionNotFoundError(
                f"{text!r} is not a model version.",
                fix="write a version as 3, v3 or <model>:v3 (see `metarec models list`).",
            )
        return cls(model=match["model"] or default_model, version=int(match["version"]))


class Lineage(BaseModel):
    """Where a version came from, read from its typed model card."""

    algorithm: str | None = None
    feature_service: str | None = None
    feature_service_version: str | None = None
    dataset_fingerprint: str | None = None
    snapshot_id: str | None = None
    validation_result_id: str | None = None
    code_version: str | None = None
    trained_at: str | None = None
    training_config: dict[str, Any] = Field(
        default_factory=dict, description="Hyper-parameters and architecture."
    )
    metrics: dict[str, Any] = Field(default_factory=dict)
    test_users: dict[str, Any] = Field(default_factory=dict)
    card_error: str | None = Field(
        default=None,
        description="Why the stored model card could not be read (a card of an older MetaRec): "
        "training_config, metrics and test_users are then empty.",
    )


class VersionInfo(BaseModel):
    """A registered model version."""

    model: str
    version: int
    tag: str
    stage: Stage
    artifact_uri: str
    digest: str
    files: dict[str, str]
    lineage: Lineage
    gate_decision: dict[str, Any] | None
    bento_tag: str | None
    created_by: str
    created_at: datetime


class LedgerEntry(BaseModel):
    """One append-only ledger entry."""

    id: int
    operation_id: str
    model: str
    version: int | None
    action: Action
    from_stage: Stage | None
    to_stage: Stage | None
    actor: str
    reason: str
    evidence: dict[str, Any]
    created_at: datetime


class ModelSummary(BaseModel):
    """A registered model with its version count and production version."""

    name: str
    versions: int
    production: int | None
    created_at: datetime


class GateEvidence(Protocol):
    """What the registry needs of an evaluation gate decision to register or reject a candidate.

    :class:`metarec.gate.GateDecision` is one; the registry stores its JSON with the version and
    in the ledger, and never imports the gate (the gate reads the registry, not the reverse).
    """

    @property
    def accepted(self) -> bool:
        """Whether every check passed."""
        ...

    @property
    def artifact_digest(self) -> str:
        """The digest of the artifact the decision is for."""
        ...

    def summary(self) -> str:
        """One line: accepted, or the broken rules."""
        ...

    def model_dump(self, *, mode: str = ...) -> dict[str, Any]:
        """The decision as JSON-able data (``mode="json"``)."""
        ...
