"""Deliver notifications to webhooks in the background: retried with backoff, never blocking.

A :class:`Notifier` owns one daemon thread and a queue. :meth:`Notifier.notify` only enqueues,
so the controller loop or a flow never waits on a receiver; the thread posts each delivery,
retrying a failed attempt (connection error, timeout, 5xx, 429) after ``backoff_s``, doubled
each time, up to ``max_attempts``. A delivery that still fails is logged and counted
(:attr:`Notifier.failed`), never raised.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from metarec.config_notify import NotificationSettings, WebhookTarget
from metarec.notify.events import Notification
from metarec.notify.payloads import payload

log = logging.getLogger(__name__)
_RETRIED_STATUS = frozenset({408, 425, 429})


@dataclass(frozen=True)
class Delivery:
    """One notification for one receiver."""

    notification: Notification
    target: WebhookTarget


class Notifier:
    """Sends notifications to the configured webhooks from a background thread."""

    def __init__(
        self,
        targets: list[WebhookTarget],
        *,
        max_attempts: int = 5,
        backoff_s: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
        client: httpx.Client | None = None,
    ) -> None:
        """Prepare the notifier; its thread starts with the first notification.

        Args:
            targets: The receivers (each with the events it wants).
            max_attempts: Attempts per delivery.
            backoff_s: First retry delay, doubled after each failed attempt.
            sleep: Waits between attempts (tests pass their own).
            client: HTTP client (default: one owned and closed by the notifier).
        """
        self.targets = list(targets)
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.delivered = 0
        self.failed = 0
        self._sleep = sleep
        self._client = client
        self._owns_client = client is None
        self._queue: queue.Queue[Delivery | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, config: NotificationSettings) -> Notifier:
        """A notifier for the ``notifications`` section (no webhook: it sends nothing)."""
        return cls(config.webhooks, max_attempts=config.max_attempts, backoff_s=config.backoff_s)

    def notify(self, notification: Notification) -> int:
        """Queue ``notification`` for every receiver that wants its kind; returns how many."""
        wanted = [t for t in self.targets if notification.kind in t.events]
        if not wanted:
            return 0
        self._start()
        for target in wanted:
            self._queue.put(Delivery(notification, target))
        return len(wanted)

    def flush(self, *, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for queued deliveries; True when none is left."""
        deadline = time.monotonic() + timeout_s
        while self._queue.unfinished_tasks:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)
        return True

    def close(self, *, timeout_s: float = 0.0) -> None:
        """Flush for up to ``timeout_s``, then stop the thread (what is left is dropped, logged)."""
        if self._thread is None:
            return
        if not self.flush(timeout_s=timeout_s):
            log.warning("notifications: %d deliveries dropped at exit", self._queue.qsize())
        self._queue.put(None)
        self._thread.join(timeout=1.0)
        self._thread = None
        if self._owns_client and self._client is not None:
            self._client.close()
            self._client = None

    # ---------------------------------------------------------------- worker
    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                if self._client is None:
                    self._client = httpx.Client()
                self._thread = threading.Thread(
                    target=self._work, name="metarec-notifier", daemon=True
                )
                self._thread.start()

    def _work(self) -> None:
        while True:
            delivery = self._queue.get()
            try:
                if delivery is None:
                    return
                if self._deliver(delivery):
                    self.delivered += 1
                else:
                    self.failed += 1
            finally:
                self._queue.task_done()

    def _deliver(self, delivery: Delivery) -> bool:
        """Post one delivery, retrying with backoff; True when the receiver accepted it."""
        target, notification = delivery.target, delivery.notification
        body = payload(notification, format=target.format)
        headers = {}
        if target.bearer_token is not None:
            headers["Authorization"] = f"Bearer {target.bearer_token.get_secret_value()}"
        delay, error = self.backoff_s, ""
        for attempt in range(1, self.max_attempts + 1):
            error = self._attempt(target, body, headers)
            if not error:
                return True
            if error.startswith("refused"):
                break
            if attempt < self.max_attempts:
                self._sleep(delay)
                delay *= 2
        log.warning(
            "notification %r to %s failed after %d attempt(s): %s",
            notification.title,
            _host(target.url),
            attempt,
            error,
        )
        return False

    def _attempt(self, target: WebhookTarget, body: dict, headers: dict[str, str]) -> str:
        """One POST: '' on success, else why (``refused …`` when retrying cannot help)."""
        assert self._client is not None
        try:
            response = self._client.post(
                target.url, json=body, headers=headers, timeout=target.timeout_s
            )
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}"
        if response.is_success:
            return ""
        status = response.status_code
        if status >= 500 or status in _RETRIED_STATUS:
            return f"HTTP {status}"
        return f"refused: HTTP {status}"


def _host(url: str) -> str:
    """The URL without its path (a Slack hook's path is its secret)."""
    parsed = httpx.URL(url)
    return f"{parsed.scheme}://{parsed.host}"
