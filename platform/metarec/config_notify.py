"""Typed settings of the ``notifications`` section: where MetaRec sends its notifications."""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, SecretStr

NotificationKind = Literal[
    "gate_rejected", "promoted", "rolled_back", "retrain_failed", "drift_alert"
]


class WebhookTarget(BaseModel):
    """One receiver of notifications: a URL and the body format it reads."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(pattern=r"^https?://", description="Where the POST goes.")
    format: Literal["json", "slack"] = Field(
        default="json",
        description="`json`: the generic body (every field of the event). `slack`: a Slack "
        "incoming-webhook message (text and blocks); Mattermost and Teams' Slack-compatible "
        "hooks read it too.",
    )
    events: list[NotificationKind] = Field(
        default_factory=lambda: list(get_args(NotificationKind)),
        description="The events this receiver gets (default: all).",
    )
    bearer_token: SecretStr | None = Field(
        default=None, description="Sent as `Authorization: Bearer <token>` when set."
    )
    timeout_s: float = Field(default=5.0, gt=0, description="Per-attempt HTTP timeout.")


class NotificationSettings(BaseModel):
    """Webhooks told about gate rejections, promotions, rollbacks, failed retrains and drift."""

    model_config = ConfigDict(extra="forbid")

    webhooks: list[WebhookTarget] = Field(
        default_factory=list,
        description="Receivers, e.g. `[{url: https://hooks.slack.com/…, format: slack}]` (env: "
        "a JSON list). Empty: nothing is sent.",
    )
    max_attempts: int = Field(
        default=5, ge=1, le=20, description="Attempts per delivery before it counts as failed."
    )
    backoff_s: float = Field(
        default=1.0, gt=0, description="First retry delay; doubled after each failed attempt."
    )
    flush_timeout_s: float = Field(
        default=10.0,
        ge=0,
        description="How long a one-shot command (gate, retrain) waits at its end for pending "
        "deliveries; the long-running controller never waits.",
    )
    links_base_url: str | None = Field(
        default=None,
        description="Where people open rollout reports, e.g. https://reports.example.com/rollouts "
        "(links become <base>/<rollout id>/report.html). Empty: local file links.",
    )
