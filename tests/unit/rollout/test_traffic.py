"""TrafficGenerator: bounded, paced replay of users as /recommend + /feedback visits."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from metarec.rollout.traffic import NO_ANSWER, TrafficGenerator, replay_rows, user_visits

UNKNOWN_USER = 404  # the stand-in answers 404 for this user id
BROKEN_USER = 500  # and 500 for this one


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


def history(user: int, n: int, *, first_item: int = 100) -> list[tuple[int, int, float]]:
    """``n`` ratings of ``user`` in time order (items first_item, first_item + 1, …)."""
    return [(user, first_item + i, float(1 + i % 5)) for i in range(n)]


def wait_for(generator: TrafficGenerator, predicate) -> None:
    deadline = time.monotonic() + 10
    while not predicate(generator.summary()) and time.monotonic() < deadline:
        time.sleep(0.02)


def test_each_visit_recommends_on_the_first_ratings_then_feeds_back_the_later_ones(service):
    rows = history(7, 14) + history(8, 6, first_item=200)
    generator = TrafficGenerator(
        url=service.url, rows=rows, threads=2, max_requests=20, support_size=10, k=5
    )
    generator.start()
    wait_for(generator, lambda s: s.requests >= 40)
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


def test_rows_with_timestamps_are_replayed_in_time_order(service):
    # (user, item, rating, timestamp) given newest first: the support set is the oldest.
    rows = [(3, 10 + i, 4.0, 100.0 - i) for i in range(4)]
    generator = TrafficGenerator(url=service.url, rows=rows, max_requests=1, support_size=2)
    [visit] = generator.visits
    assert [item for item, _ in visit.support] == [13, 12]
    assert [item for item, _ in visit.later] == [11, 10]


def test_later_ratings_skip_support_items_and_are_capped():
    rows = [(1, 10, 5.0), (1, 11, 4.0), (1, 10, 3.0), (1, 12, 2.0), (1, 13, 1.0)]
    [visit] = user_visits(rows, support_size=2, feedback_size=1)
    assert visit.support == ((10, 5.0), (11, 4.0))
    assert visit.later == ((12, 2.0),)  # item 10 again is not feedback; capped at one
    assert user_visits([(1, 10, 5.0), (2, 11, 4.0)], support_size=5, feedback_size=5) == []


def test_unknown_users_are_asked_once_and_server_errors_get_no_feedback(service):
    rows = history(UNKNOWN_USER, 3) + history(BROKEN_USER, 3)
    generator = TrafficGenerator(url=service.url, rows=rows, threads=1, max_requests=30)
    generator.start()
    wait_for(generator, lambda s: s.recommendations >= 30)
    summary = generator.stop()
    assert summary.statuses[404] == 1 and summary.skipped_users == 1
    assert summary.statuses[500] == 29 and summary.server_errors == 29
    assert summary.feedback == 0
    assert [path for path, _ in service.bodies if path != "/recommend"] == []


def test_rate_limit_paces_visits(service):
    generator = TrafficGenerator(url=service.url, rows=history(1, 3), threads=2, rate_per_s=20)
    generator.start()
    time.sleep(1.0)
    summary = generator.stop()
    assert 10 <= summary.predictions <= 26  # ~20 in one second, with slack for a busy machine


def test_a_service_that_does_not_answer_counts_as_a_server_error():
    generator = TrafficGenerator(
        url="http://127.0.0.1:9", rows=history(1, 3), max_requests=3, timeout_s=1
    )
    generator.start()
    deadline = time.monotonic() + 10
    while generator.summary().predictions < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    summary = generator.stop()
    assert summary.statuses == {NO_ANSWER: 3} and summary.server_errors == 3


def test_a_user_with_a_later_rating_is_required():
    with pytest.raises(ValueError, match="at least one user with two or more"):
        TrafficGenerator(url="http://127.0.0.1:9", rows=[])
    with pytest.raises(ValueError, match="at least one user with two or more"):
        TrafficGenerator(url="http://127.0.0.1:9", rows=[(1, 2, 3.0), (2, 2, 3.0)])
    with pytest.raises(ValueError, match="k and feedback_size"):
        TrafficGenerator(url="http://127.0.0.1:9", rows=history(1, 3), k=0)


def test_replay_rows_samples_whole_users_in_time_order(synthetic_home):
    from metarec.features.training_set import load_training_set

    path = synthetic_home.paths.training_sets / "synthetic.parquet"
    rows = replay_rows(path, limit=200, seed=3)
    assert 0 < len(rows) <= 200 and rows == replay_rows(path, limit=200, seed=3)
    assert all(isinstance(u, int) and isinstance(i, int) and 1 <= r <= 5 for u, i, r in rows)
    frame, _ = load_training_set(path)
    frame = frame.sort_values(["user_id", "event_timestamp", "item_id"], kind="stable")
    for user in {u for u, _, _ in rows}:
        history_ = frame[frame["user_id"] == user]
        mine = [(i, r) for u, i, r in rows if u == user]
        pairs = zip(history_.item_id, history_.rating, strict=True)
        assert mine == [(int(i), float(r)) for i, r in pairs]
    assert TrafficGenerator(url="http://127.0.0.1:9", rows=rows).visits
