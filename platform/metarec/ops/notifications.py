"""Notify people of what the loop decided, through the webhooks of ``notifications.webhooks``.

Gate rejections, promotions, rollbacks, failed retrains and drift alerts.

Every use case that makes such a decision calls one function here; the words of each
notification (reason, links to the reports) are built here once. Delivery never raises and
never holds up the loop (:class:`~metarec.notify.Notifier` sends from its own thread); a
one-shot command waits at its end up to ``notifications.flush_timeout_s`` so that nothing it
queued is lost when the process exits.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from metarec.config import Settings
from metarec.data.inputs import is_uri
from metarec.gate.decision import GateDecision
from metarec.notify import Notification, Notifier
from metarec.rollout.types import Phase, RolloutState

_ENDED: dict[Phase, str] = {
    Phase.SUCCEEDED: "promoted",
    Phase.FAILED: "rolled_back",
    Phase.ABORTED: "rolled_back",
}


def build_notifier(settings: Settings) -> Notifier:
    """A notifier for the configured webhooks (none configured: it sends nothing)."""
    return Notifier.from_settings(settings.notifications)


@contextmanager
def notifier_session(settings: Settings, notifier: Notifier | None = None) -> Iterator[Notifier]:
    """``notifier``, or a new one that is flushed (``flush_timeout_s``) and closed after."""
    if notifier is not None:
        yield notifier
        return
    owned = build_notifier(settings)
    try:
        yield owned
    finally:
        owned.close(timeout_s=settings.notifications.flush_timeout_s)


def send(
    settings: Settings, notification: Notification, *, notifier: Notifier | None = None
) -> None:
    """Send ``notification`` to every webhook that wants its kind (never raises).

    Args:
        settings: The ``notifications`` section.
        notification: What to say.
        notifier: A long-lived notifier (the controller's, the API's); default: a one-shot one
            that waits for its deliveries up to ``flush_timeout_s``.
    """
    if not settings.notifications.webhooks:
        return
    with notifier_session(settings, notifier) as current:
        current.notify(notification)


def gate_rejected(
    decision: GateDecision, *, model: str, artifact: str, links: Mapping[str, str] = {}
) -> Notification:
    """The notification of a rejected candidate: the broken rules, the artifact, the decision."""
    return Notification(
        kind="gate_rejected",
        model=model,
        reason=decision.summary(),
        links={"artifact": link(artifact), **links},
        details={"artifact_digest": decision.artifact_digest},
    )


def rollout_ended(
    settings: Settings, state: RolloutState, *, reports: Mapping[str, Path]
) -> Notification | None:
    """The notification of a rollout's end (promoted, or rolled back), with its reports.

    Returns:
        None when the phase is not an end worth telling (the rollout is still active).
    """
    kind = _ENDED.get(state.phase)
    if kind is None:
        return None
    return Notification(
        kind=kind,  # type: ignore[arg-type]  # a NotificationKind by construction
        model=state.model,
        version=state.version,
        reason=state.message or state.phase.value,
        links=report_links(settings, state.id, reports),
        details={
            "rollout_id": state.id,
            "phase": state.phase.value,
            "canary_weight": state.canary_weight,
            "production_version": state.production_version,
        },
    )


def flagger_verdict(
    *, model: str, version: int, promoted: bool, reason: str, canary: str
) -> Notification:
    """The notification of a verdict Flagger reached (its post-rollout webhook)."""
    return Notification(
        kind="promoted" if promoted else "rolled_back",
        model=model,
        version=version,
        reason=reason,
        details={"engine": "flagger", "canary": canary},
    )


def retrain_failed(
    *,
    model: str,
    reason: str,
    links: Mapping[str, str] = {},
    details: Mapping[str, Any] = {},
) -> Notification:
    """The notification of a retrain that stopped with an error (the error is the reason)."""
    return Notification(
        kind="retrain_failed", model=model, reason=reason, links=dict(links), details=dict(details)
    )


def report_links(
    settings: Settings, rollout_id: str, reports: Mapping[str, Path]
) -> dict[str, str]:
    """Links to a rollout's reports: under ``links_base_url`` when set, else the files."""
    base = settings.notifications.links_base_url
    links = {}
    for suffix, path in reports.items():
        name = f"report_{suffix}"
        links[name] = f"{base.rstrip('/')}/{rollout_id}/{path.name}" if base else link(str(path))
    return links


def link(location: str | Path) -> str:
    """A URI for ``location``: URIs as they are, local paths as ``file://`` URIs."""
    if is_uri(location):
        return str(location)
    return Path(location).resolve().as_uri()
