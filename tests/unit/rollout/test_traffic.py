"""TrafficGenerator: bounded, paced replay of ratings as /predict + /feedback."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from metarec.rollout.traffic import NO_ANSWER, TrafficGenerator, replay_rows

UNKNOWN_ITEM = 404  # the stand-in answers 404 for this item id
BROKEN_ITEM = 500  # and 500 for this one


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
                item = body["item_ids"][0] if self.path == "/predict" else 0
                status = item if item in (UNKNOWN_ITEM, BROKEN_ITEM) else 200
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


def test_each_prediction_is_followed_by_feedback_with_the_observed_rating(service):
    rows = [(7, 11, 4.0), (8, 12, 2.0)]
    generator = TrafficGenerator(url=service.url, rows=rows, threads=2, max_requests=20)
    generator.start()
    deadline = time.monotonic() + 10
    while generator.summary().feedback < 20 and time.monotonic() < deadline:
        time.sleep(0.02)
    summary = generator.stop()
    assert summary.predictions == 20 and summary.feedback == 20
    assert summary.statuses == {200: 40} and summary.server_errors == 0
    assert summary.by_backend == {"canary": 40}
    pairs = {(r[0], r[1]): r[2] for r in rows}
    predicted = [b for path, b in service.bodies if path == "/predict"]
    feedback = [b["events"][0] for path, b in service.bodies if path == "/feedback"]
    assert all((b["user_id"], b["item_ids"][0]) in pairs for b in predicted)
    assert all(e["rating"] == pairs[(e["user_id"], e["item_id"])] for e in feedback)


def test_unknown_pairs_are_asked_once_and_server_errors_get_no_feedback(service):
    rows = [(1, UNKNOWN_ITEM, 3.0), (1, BROKEN_ITEM, 3.0)]
    generator = TrafficGenerator(url=service.url, rows=rows, threads=1, max_requests=30)
    generator.start()
    deadline = time.monotonic() + 10
    while generator.summary().predictions < 30 and time.monotonic() < deadline:
        time.sleep(0.02)
    summary = generator.stop()
    assert summary.statuses[404] == 1 and summary.skipped_pairs == 1
    assert summary.statuses[500] == 29 and summary.server_errors == 29
    assert summary.feedback == 0


def test_rate_limit_paces_predictions(service):
    generator = TrafficGenerator(url=service.url, rows=[(1, 2, 3.0)], threads=2, rate_per_s=20)
    generator.start()
    time.sleep(1.0)
    summary = generator.stop()
    assert 10 <= summary.predictions <= 26  # ~20 in one second, with slack for a busy machine


def test_a_service_that_does_not_answer_counts_as_a_server_error():
    generator = TrafficGenerator(
        url="http://127.0.0.1:9", rows=[(1, 2, 3.0)], max_requests=3, timeout_s=1
    )
    generator.start()
    deadline = time.monotonic() + 10
    while generator.summary().predictions < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    summary = generator.stop()
    assert summary.statuses == {NO_ANSWER: 3} and summary.server_errors == 3


def test_rows_are_required():
    with pytest.raises(ValueError, match="at least one"):
        TrafficGenerator(url="http://127.0.0.1:9", rows=[])


def test_replay_rows_samples_the_training_set(synthetic_home):
    path = synthetic_home.paths.training_sets / "synthetic.parquet"
    rows = replay_rows(path, limit=50, seed=3)
    assert len(rows) == 50 and rows == replay_rows(path, limit=50, seed=3)
    assert all(isinstance(u, int) and isinstance(i, int) and 1 <= r <= 5 for u, i, r in rows)
