"""Notifications: gate rejections, promotions, rollbacks, failed retrains and drift alerts.

Sent to webhooks as generic JSON or Slack-compatible messages.
"""

from metarec.notify.events import EVENT_KINDS, EventKind, Notification
from metarec.notify.notifier import Delivery, Notifier, WebhookTarget

__all__ = ["EVENT_KINDS", "Delivery", "EventKind", "Notification", "Notifier", "WebhookTarget"]
