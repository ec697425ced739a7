"""The bodies a webhook receives: generic JSON, or a Slack-compatible message."""

from __future__ import annotations

from typing import Any, Literal

from metarec.notify.events import Notification

PayloadFormat = Literal["json", "slack"]
_ICONS = {
    "gate_rejected": ":no_entry:",
    "promoted": ":white_check_mark:",
    "rolled_back": ":rewind:",
    "retrain_failed": ":x:",
    "drift_alert": ":warning:",
}


def json_payload(notification: Notification) -> dict[str, Any]:
    """The generic JSON body: every field, ``title`` added, times in ISO 8601."""
    return {"title": notification.title, **notification.model_dump(mode="json")}


def slack_payload(notification: Notification) -> dict[str, Any]:
    """A Slack incoming-webhook body (``text`` fallback plus Block Kit sections)."""
    text = f"{_ICONS[notification.kind]} *{notification.title}*\n{notification.reason}"
    blocks: list[dict[str, Any]] = [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]
    if notification.links:
        links = " · ".join(f"<{url}|{name}>" for name, url in notification.links.items())
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": links}]})
    return {"text": f"{notification.title}: {notification.reason}", "blocks": blocks}


def payload(notification: Notification, *, format: PayloadFormat) -> dict[str, Any]:
    """The body of ``notification`` in ``format``."""
    return slack_payload(notification) if format == "slack" else json_payload(notification)
