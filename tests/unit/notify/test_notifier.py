"""The notifier: payload formats, retries with backoff, failures counted, never blocking."""

from __future__ import annotations

import time

import pytest
from metarec.config_notify import WebhookTarget
from metarec.notify import Notification, Notifier
from metarec.testing.webhooks import Receiver

ROLLED_BACK = Notification(
    kind="rolled_back",
    model="metarec",
    version=3,
    reason="error rate 0.20 > 0.01 twice",
    links={"report_html": "file:///tmp/r/report.html"},
)


def _notifier(targets, **options) -> Notifier:
    options.setdefault("sleep", lambda _s: None)
    return Notifier(targets, **options)


def test_json_and_slack_receivers_get_their_own_body_and_the_token():
    with Receiver() as receiver:
        notifier = _notifier(
            [
                WebhookTarget(url=f"{receiver.url}/json", bearer_token="s3cret"),
                WebhookTarget(url=f"{receiver.url}/slack", format="slack"),
            ]
        )
        assert notifier.notify(ROLLED_BACK) == 2
        assert notifier.flush(timeout_s=5)
        notifier.close()
    [body] = receiver.bodies("/json")
    assert body["kind"] == "rolled_back" and body["version"] == 3
    assert body["title"] == "Canary rolled back: metarec:v3"
    assert body["reason"] == ROLLED_BACK.reason
    assert body["links"] == {"report_html": "file:///tmp/r/report.html"}
    [slack] = receiver.bodies("/slack")
    assert slack["text"] == f"Canary rolled back: metarec:v3: {ROLLED_BACK.reason}"
    assert "<file:///tmp/r/report.html|report_html>" in str(slack["blocks"])
    headers = {path: h for path, h, _b in receiver.received}
    assert headers["/json"]["Authorization"] == "Bearer s3cret"
    assert "Authorization" not in headers["/slack"]
    assert (notifier.delivered, notifier.failed) == (2, 0)


def test_a_receiver_only_gets_the_events_it_asked_for():
    with Receiver() as receiver:
        notifier = _notifier([WebhookTarget(url=receiver.url, events=["gate_rejected"])])
        assert notifier.notify(ROLLED_BACK) == 0
        notifier.close(timeout_s=1)
    assert receiver.received == []


def test_server_errors_are_retried_with_doubling_backoff_until_accepted():
    waits: list[float] = []
    with Receiver(statuses=[503, 500, 429]) as receiver:
        notifier = _notifier([WebhookTarget(url=receiver.url)], backoff_s=0.5, sleep=waits.append)
        notifier.notify(ROLLED_BACK)
        assert notifier.flush(timeout_s=5)
        notifier.close()
    assert len(receiver.received) == 4
    assert waits == [0.5, 1.0, 2.0]
    assert (notifier.delivered, notifier.failed) == (1, 0)


def test_a_refusal_is_not_retried_and_is_counted_as_failed(caplog):
    with Receiver(statuses=[404]) as receiver:
        notifier = _notifier([WebhookTarget(url=f"{receiver.url}/secret-path")])
        notifier.notify(ROLLED_BACK)
        assert notifier.flush(timeout_s=5)
        notifier.close()
    assert len(receiver.received) == 1
    assert (notifier.delivered, notifier.failed) == (0, 1)
    assert "HTTP 404" in caplog.text and "secret-path" not in caplog.text


def test_an_unreachable_receiver_is_given_up_after_max_attempts():
    with Receiver() as receiver:
        url = receiver.url
    notifier = _notifier([WebhookTarget(url=url, timeout_s=1)], max_attempts=3)
    notifier.notify(ROLLED_BACK)
    assert notifier.flush(timeout_s=10)
    notifier.close()
    assert (notifier.delivered, notifier.failed) == (0, 1)


def test_notify_returns_at_once_while_a_slow_receiver_answers():
    with Receiver(delay_s=1.0) as receiver:
        notifier = _notifier([WebhookTarget(url=receiver.url)])
        started = time.perf_counter()
        notifier.notify(ROLLED_BACK)
        assert time.perf_counter() - started < 0.2
        assert not notifier.flush(timeout_s=0.1)  # still delivering
        assert notifier.flush(timeout_s=5)
        notifier.close()
    assert notifier.delivered == 1


@pytest.mark.parametrize("url", ["ftp://x", "hooks.example.com"])
def test_a_webhook_url_must_be_http(url):
    with pytest.raises(ValueError, match="url"):
        WebhookTarget(url=url)
