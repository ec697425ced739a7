"""What a notification says: the event, the model version, the reason and links to reports."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, get_args

from pydantic import BaseModel, ConfigDict, Field

from metarec.config_notify import NotificationKind as EventKind

EVENT_KINDS: tuple[str, ...] = get_args(EventKind)

_TITLES: dict[str, str] = {
    "gate_rejected": "Candidate rejected by the evaluation gate",
    "promoted": "Version promoted to production",
    "rolled_back": "Canary rolled back",
    "retrain_failed": "Scheduled retrain failed",
    "drift_alert": "Live traffic drifted from the training data",
}


class Notification(BaseModel):
    """One event worth telling a person about.

    Attributes:
        kind: What happened.
        model: The registered model.
        version: The model version concerned (None: no version yet, e.g. a failed retrain).
        reason: Why, in one line (the gate's failed rules, the canary's failed check, the error).
        links: Named links to what a person opens next (reports, ledger, run).
        details: Further machine-readable facts (rollout id, weights, metrics).
        at: When it happened (UTC).
    """

    model_config = ConfigDict(frozen=True)

    kind: EventKind
    model: str
    version: int | None = None
    reason: str
    links: dict[str, str] = Field(default_factory=dict)
    details: dict[str, Any] = Field(default_factory=dict)
    at: datetime = Field(default_factory=lambda: datetime.now(UTC))

    @property
    def title(self) -> str:
        """A human title: the event and the version (``metarec:v3``)."""
        subject = self.model if self.version is None else f"{self.model}:v{self.version}"
        return f"{_TITLES[self.kind]}: {subject}"
