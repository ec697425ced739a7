"""TrafficGenerator against a local HTTP stand-in: visits, statuses, pacing, no answer.

Each test waits for the generator's threads to end by themselves (a visit budget), never for a
fixed time.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from metarec.rollout.traffic import NO_ANSWER, TrafficGenerator

pytestmark = pytest.mark.integration

UNKNOWN_USER = 404  # the stand-in answers 404 for this user id
BROKEN_USER = 500  # and 500 for this one


def history(user: int, n: int, *, first_item: int = 100) -> list[tuple[int, int, float]]:
    """``n`` ratings of ``user`` in time order (items first_item, first_item + 1, …)."""
    return [(user, first_item + i, float(1 + i % 5)) for i in range(n)]


class Recorder:
    """A local HTTP stand-in that records what it was sent."""

    def __init__(self) -> None:
        self.bodies: list[tuple[str, dict]] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args):
                return

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                recorder.bodies.append((self.path, body))
                user = body["user_id"] if self.path == "/recommend" else 0
                status = user if user in (UNKNOWN_USER, BROKEN_USER) else 200
                payload = b"{}"
                self.send_response(status)
                self.send_header("content-length", str(len(payload)))
                self.send_header("x-metarec-backend", "canary")
                self.end_headers()
                self.wfile.write(payload)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def service():
    recorder = Recorder()
    yield recorder
    recorder.close()


def test_each_visit_recommends_on_the_first_ratings_then_feeds_back_the_later_ones(service):
    rows = history(7, 14) + history(8, 6, first_item=200)
    generator = TrafficGenerator(
        url=service.url, rows=rows, threads=2, max_requests=20, support_size=10, k=5
    )
    generator.start()
    assert generator.wait(timeout_s=10)  # 20 visits, then the threads end by themselves
    summary = generator.stop()
    assert summary.recommendations == 20 and summary.predictions == 20
    assert summary.statuses == {200: 40} and summary.server_errors == 0
    assert summary.by_backend == {"canary": 40}
    recommended = [b for path, b in service.bodies if path == "/recommend"]
    feedback = [b["events"] for path, b in service.bodies if path == "/feedback"]
    expected = {
        7: ([(100 + i, float(1 + i % 5)) for i in range(10)], [110, 111, 112, 113]),
        # A user with fewer ratings than support_size + 1 keeps the last one for feedback.
        8: ([(200 + i, float(1 + i % 5)) for i in range(5)], [205]),
    }
    assert len(recommended) == len(feedback) == 20
    for body in recommended:  # two threads: the requests of different visits interleave
        support, _ = expected[body["user_id"]]
        assert body["k"] == 5
        assert [(s["item_id"], s["rating"]) for s in body["support"]] == support
    for events in feedback:
        [user] = {e["user_id"] for e in events}
        assert [e["item_id"] for e in events] == expected[user][1]
    ratings = dict(((u, i), r) for u, i, r in rows)
    assert all(e["rating"] == ratings[(e["user_id"], e["item_id"])] for b in feedback for e in b)
    sent = sum(len(events) for events in feedback)
    positive = sum(e["rating"] >= 4 for events in feedback for e in events)
    assert summary.feedback == sent and summary.positive_feedback == positive


def test_unknown_users_are_asked_once_and_server_errors_get_no_feedback(service):
    rows = history(UNKNOWN_USER, 3) + history(BROKEN_USER, 3)
    generator = TrafficGenerator(url=service.url, rows=rows, threads=1, max_requests=30)
    generator.start()
    assert generator.wait(timeout_s=10)  # the budget of 30 visits is spent
    summary = generator.stop()
    assert summary.statuses[404] == 1 and summary.skipped_users == 1
    assert summary.statuses[500] == 29 and summary.server_errors == 29
    assert summary.feedback == 0
    assert [path for path, _ in service.bodies if path != "/recommend"] == []


def test_rate_limit_paces_visits(service):
    # Counted, not slept: 20 visits at 20 per second. The same band as ever (10 to 26 visits
    # a second, with slack for a busy machine), as the time the 20 visits took.
    generator = TrafficGenerator(
        url=service.url, rows=history(1, 3), threads=2, rate_per_s=20, max_requests=20
    )
    generator.start()
    assert generator.wait(timeout_s=30)
    summary = generator.stop()
    assert summary.predictions == 20
    assert 20 / 26 <= summary.duration_s <= 20 / 10


def test_a_service_that_does_not_answer_counts_as_a_server_error():
    generator = TrafficGenerator(
        url="http://127.0.0.1:9", rows=history(1, 3), max_requests=3, timeout_s=1
    )
    generator.start()
    assert generator.wait(timeout_s=10)
    summary = generator.stop()
    assert summary.statuses == {NO_ANSWER: 3} and summary.server_errors == 3


def test_positive_events_are_sent_without_a_rating_key_and_count_as_positive(service):
    # Rows of a training set of implicit events (replay_rows): the rating is None.
    rows = [(5, 300 + i, None) for i in range(4)]
    generator = TrafficGenerator(
        url=service.url, rows=rows, threads=1, max_requests=3, support_size=2, k=5
    )
    generator.start()
    assert generator.wait(timeout_s=10)
    summary = generator.stop()
    recommended = [b for path, b in service.bodies if path == "/recommend"]
    feedback = [b["events"] for path, b in service.bodies if path == "/feedback"]
    assert len(recommended) == len(feedback) == 3
    assert all(b["support"] == [{"item_id": 300}, {"item_id": 301}] for b in recommended)
    assert all(
        events == [{"user_id": 5, "item_id": 302}, {"user_id": 5, "item_id": 303}]
        for events in feedback
    )
    assert summary.feedback == summary.positive_feedback == 6


def test_text_ids_are_sent_as_json_strings(service):
    # Rows of a training set of a team's text ids (replay_rows keeps them as text).
    rows = [("c001", f"sku-{i:03d}", float(5 - i)) for i in range(4)]
    rows += [("c002", "sku-010", None), ("c002", "sku-011", None)]
    generator = TrafficGenerator(
        url=service.url, rows=rows, threads=1, max_requests=20, support_size=2, k=5
    )
    generator.start()
    assert generator.wait(timeout_s=10)
    summary = generator.stop()
    support = {
        "c001": [{"item_id": "sku-000", "rating": 5.0}, {"item_id": "sku-001", "rating": 4.0}],
        "c002": [{"item_id": "sku-010"}],
    }
    later = {
        "c001": [
            {"user_id": "c001", "item_id": "sku-002", "rating": 3.0},
            {"user_id": "c001", "item_id": "sku-003", "rating": 2.0},
        ],
        "c002": [{"user_id": "c002", "item_id": "sku-011"}],
    }
    recommended = [b for path, b in service.bodies if path == "/recommend"]
    feedback = [b["events"] for path, b in service.bodies if path == "/feedback"]
    assert len(recommended) == len(feedback) == 20
    assert all(b["support"] == support[b["user_id"]] and b["k"] == 5 for b in recommended)
    assert all(events == later[events[0]["user_id"]] for events in feedback)
    visits = {b["user_id"] for b in recommended}
    assert visits == {"c001", "c002"}  # 20 seeded draws of two users reach both
    positives = sum(1 for b in recommended if b["user_id"] == "c002")
    assert summary.statuses == {200: 40} and summary.positive_feedback == positives
