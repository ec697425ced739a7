"""Test-side stand-ins for the adaptation service, with fault injection.

A :class:`FakeService` answers the adaptation service's HTTP contract (``/recommend``,
``/predict``, ``/feedback``, ``/metadata``, ``/livez``, ``/readyz``, ``/metrics``) and exposes
the same Prometheus metrics through a real ``prometheus_client`` registry, online hits
(positive feedback on an item of the last list served to the user) included. Faults (a share of
5xx, added latency, biased predictions) live here, never in the production service.

A :class:`LoadLoop` sends bounded real HTTP traffic (a request count AND a deadline) through a
router and records, per request, which backend answered and with what status; a test waits for
traffic with :meth:`LoadLoop.wait_outcomes` (a count, never a sleep).

Both start threads and sockets: only integration tests load this module (by file path).
"""

from __future__ import annotations

import contextlib
import json
import random
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


def true_rating(user: int, item: int) -> float:
    """The rating a user 'really' gives an item (what feedback reports)."""
    return float(1 + (user * 31 + item * 17) % 5)


class FakeService:
    """A local HTTP service with the adaptation service's endpoints and metrics."""

    def __init__(
        self,
        *,
        model_version: str,
        error_every: int = 0,
        latency_s: float = 0.0,
        bias: float = 0.5,
    ) -> None:
        self.model_version = model_version
        self.error_every = error_every  # every n-th POST answers 500 (0: never)
        self.latency_s = latency_s
        self.bias = bias
        self._lock = threading.Lock()
        self._count = 0
        self._predictions: dict[tuple[int, int], float] = {}
        self.metrics = CollectorRegistry()
        labels = ["endpoint", "model_version", "status"]
        self.requests = Counter("metarec_requests", "Requests.", labels, registry=self.metrics)
        self.latency = Histogram(
            "metarec_request_latency_seconds",
            "Latency.",
            ["endpoint", "model_version"],
            registry=self.metrics,
        )
        self.feedback = Counter(
            "metarec_feedback", "Feedback events.", ["model_version"], registry=self.metrics
        )
        self.abs_error = Gauge(
            "metarec_feedback_abs_error_sum",
            "Sum of |prediction - rating|.",
            ["model_version"],
            registry=self.metrics,
        )
        self.online_mae = Gauge(
            "metarec_online_mae", "Online MAE.", ["model_version"], registry=self.metrics
        )
        self.positive = Counter(
            "metarec_feedback_positive",
            "Positive events.",
            ["model_version"],
            registry=self.metrics,
        )
        self.hits = Counter(
            "metarec_feedback_hits", "Hits.", ["model_version"], registry=self.metrics
        )
        self._served: dict[int, set[int]] = {}  # the last list served per user
        self._mae = [0.0, 0]
        self._connections: set[socket.socket] = set()
        service = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self):
                super().setup()
                self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                with service._lock:
                    service._connections.add(self.request)

            def finish(self):
                with service._lock:
                    service._connections.discard(self.request)
                super().finish()

            def log_message(self, *args):
                return

            def _send(self, status: int, payload: object, content_type="application/json"):
                body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", content_type)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                if self.path == "/metrics":
                    with service._lock:  # a scrape never sees half of one feedback event
                        exposition = generate_latest(service.metrics)
                    return self._send(200, exposition, "text/plain")
                if self.path in ("/livez", "/readyz"):
                    return self._send(200, {"status": "ok"})
                if self.path == "/metadata":
                    return self._send(200, {"model_version": service.model_version})
                return self._send(404, {"error": "not found"})

            def do_POST(self):
                started = time.perf_counter()
                body = json.loads(self.rfile.read(int(self.headers["content-length"] or 0)))
                endpoint = self.path.strip("/")
                status, payload = service.handle(endpoint, body)
                service.requests.labels(endpoint, service.model_version, str(status)).inc()
                service.latency.labels(endpoint, service.model_version).observe(
                    time.perf_counter() - started
                )
                return self._send(status, payload)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def handle(self, endpoint: str, body: dict) -> tuple[int, object]:
        user = int(body.get("user_id") or 0)
        with self._lock:
            self._count += 1
            fail = self.error_every and self._count % self.error_every == 0
        if fail:
            return 500, {"error": "injected fault"}
        if endpoint in ("predict", "recommend"):
            if self.latency_s:
                time.sleep(self.latency_s)
            items = body.get("item_ids") or body.get("candidates") or [1, 2, 3]
            scores = {}
            for item in items:
                scores[item] = true_rating(user, item) + self.bias
                with self._lock:
                    self._predictions[(user, item)] = scores[item]
            if endpoint == "predict":
                return 200, {
                    "predictions": [{"item_id": i, "rating": s} for i, s in scores.items()]
                }
            k = int(body.get("k") or 10)
            ranked = sorted(scores.items(), key=lambda kv: -kv[1])[:k]
            with self._lock:
                self._served[user] = {item for item, _ in ranked}
            return 200, {"items": [{"item_id": i, "score": s} for i, s in ranked]}
        if endpoint == "feedback":
            for event in body.get("events", []):
                key = (int(event["user_id"]), int(event["item_id"]))
                with self._lock:  # the count and the error sum move together for a scrape
                    predicted = self._predictions.get(key, true_rating(*key) + self.bias)
                    error = abs(predicted - float(event["rating"]))
                    self._mae[0] += error
                    self._mae[1] += 1
                    mae = self._mae[0] / self._mae[1]
                    self.feedback.labels(self.model_version).inc()
                    self.abs_error.labels(self.model_version).inc(error)
                    self.online_mae.labels(self.model_version).set(mae)
                with self._lock:
                    served = self._served.get(key[0])
                if served is not None and float(event["rating"]) >= 4:
                    self.positive.labels(self.model_version).inc()
                    if key[1] in served:
                        self.hits.labels(self.model_version).inc()
            return 200, {"accepted": len(body.get("events", []))}
        return 404, {"error": f"no endpoint {endpoint}"}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> FakeService:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def crash(self) -> None:
        """Stop, and reset every open connection too (keep-alive clients see it at once)."""
        self.stop()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


@dataclass
class Outcome:
    kind: str
    backend: str | None
    status: int | None
    error: str | None = None
    body: str | None = None
    user: int | None = None


@dataclass
class LoadLoop:
    """Bounded traffic: at most ``max_requests`` predictions, until ``deadline_s`` at most."""

    url: str
    max_requests: int = 20_000
    deadline_s: float = 60.0
    threads: int = 3
    users: int = 400
    seed: int = 0
    rows: list[tuple[int, int, float]] | None = None  # real (user, item, rating) to replay
    outcomes: list[Outcome] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _workers: list[threading.Thread] = field(default_factory=list)
    _sent: int = 0

    def _worker(self, index: int) -> None:
        rng = random.Random(self.seed * 100 + index)
        end = time.monotonic() + self.deadline_s
        with httpx.Client(timeout=10.0) as client:
            while not self._stop.is_set() and time.monotonic() < end:
                with self._lock:
                    if self._sent >= self.max_requests:
                        return
                    self._sent += 1
                if self.rows:
                    user, item, rating = rng.choice(self.rows)
                else:
                    user, item = rng.randint(1, self.users), rng.randint(1, 200)
                    rating = true_rating(user, item)
                self._call(client, "predict", {"user_id": user, "item_ids": [item]})
                self._call(
                    client,
                    "feedback",
                    {"events": [{"user_id": user, "item_id": item, "rating": rating}]},
                )

    def _call(self, client: httpx.Client, kind: str, payload: dict) -> None:
        try:
            response = client.post(f"{self.url}/{kind}", json=payload)
            outcome = Outcome(
                kind,
                response.headers.get("x-metarec-backend"),
                response.status_code,
                body=None if response.status_code == 200 else response.text[:300],
                user=payload.get("user_id"),
            )
        except httpx.HTTPError as exc:
            outcome = Outcome(kind, None, None, repr(exc))
        with self._changed:
            self.outcomes.append(outcome)
            self._changed.notify_all()

    def wait_outcomes(self, count: int, *, timeout_s: float = 30.0) -> bool:
        """Block until ``count`` requests got an outcome; False when ``timeout_s`` passed first."""
        with self._changed:
            return self._changed.wait_for(lambda: len(self.outcomes) >= count, timeout=timeout_s)

    def start(self) -> LoadLoop:
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._workers = [
            threading.Thread(target=self._worker, args=(i,), daemon=True)
            for i in range(self.threads)
        ]
        for worker in self._workers:
            worker.start()
        return self

    def stop(self) -> list[Outcome]:
        self._stop.set()
        for worker in self._workers:
            worker.join(timeout=30)
        return list(self.outcomes)
