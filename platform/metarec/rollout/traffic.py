"""Generated traffic for a local canary: replay observed ratings as predictions and feedback.

A canary needs requests (for the error and latency checks) and feedback (for online MAE). On a
cluster, users provide both. Locally (the quickstart, the retraining pipeline on a laptop, the
tests) :class:`TrafficGenerator` replays real ``(user, item, rating)`` rows through the router:
``POST /predict`` for the pair, then ``POST /feedback`` with the observed rating, which the
service that answered scores against its own prediction.

Traffic is bounded three ways (a request budget, a deadline and an optional rate) and every
request's outcome is kept, so a caller can check that none was lost.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

Row = tuple[int, int, float]
# Status code of a request that got no answer (connection refused, reset, timed out).
NO_ANSWER = 0


@dataclass(frozen=True)
class TrafficSummary:
    """What the generator sent and what came back."""

    predictions: int
    feedback: int
    statuses: dict[int, int]
    by_backend: dict[str, int]
    skipped_pairs: int
    duration_s: float

    @property
    def requests(self) -> int:
        """Every request sent (predictions and feedback)."""
        return sum(self.statuses.values())

    @property
    def server_errors(self) -> int:
        """Answers with a 5xx status or no answer at all."""
        return sum(n for status, n in self.statuses.items() if status >= 500 or status == 0)


class TrafficGenerator:
    """Replays rating rows against a service URL from a few threads until stopped or spent."""

    def __init__(
        self,
        *,
        url: str,
        rows: Sequence[Row],
        threads: int = 2,
        max_requests: int = 50_000,
        deadline_s: float = 600.0,
        rate_per_s: float | None = None,
        seed: int = 0,
        timeout_s: float = 10.0,
    ) -> None:
        """Describe the traffic (nothing is sent before :meth:`start`).

        Args:
            url: Base URL of the router (or one service).
            rows: ``(user_id, item_id, rating)`` to replay, drawn at random with replacement.
            threads: Concurrent clients.
            max_requests: Prediction budget over all threads.
            deadline_s: Seconds after which the threads stop by themselves.
            rate_per_s: Highest predictions per second over all threads (None: as fast as
                answers come).
            seed: Seed of the draw.
            timeout_s: Per-request timeout.

        Raises:
            ValueError: No rows, or a non-positive thread count or rate.
        """
        if not rows:
            raise ValueError("TrafficGenerator needs at least one (user, item, rating) row.")
        if threads < 1 or (rate_per_s is not None and rate_per_s <= 0):
            raise ValueError("threads must be ≥ 1 and rate_per_s > 0.")
        self.url = url.rstrip("/")
        self.rows = [(int(user), int(item), float(rating)) for user, item, rating in rows]
        self._pairs = len({(user, item) for user, item, _ in self.rows})
        self.threads = threads
        self.max_requests = max_requests
        self.deadline_s = deadline_s
        self.rate_per_s = rate_per_s
        self.seed = seed
        self.timeout_s = timeout_s
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._workers: list[threading.Thread] = []
        self._sent = 0
        self._feedback = 0
        self._statuses: Counter[int] = Counter()
        self._backends: Counter[str] = Counter()
        self._unservable: set[tuple[int, int]] = set()
        self._started = 0.0
        self._ended: float | None = None

    def start(self) -> TrafficGenerator:
        """Start the client threads; returns self."""
        self._started = time.monotonic()
        for index in range(self.threads):
            worker = threading.Thread(
                target=self._run, args=(index,), name=f"traffic-{index}", daemon=True
            )
            worker.start()
            self._workers.append(worker)
        return self

    def stop(self, *, timeout_s: float = 30.0) -> TrafficSummary:
        """Stop the threads (each finishes its request in flight) and summarise."""
        self._stop.set()
        for worker in self._workers:
            worker.join(timeout=timeout_s)
        if self._ended is None:
            self._ended = time.monotonic()
        return self.summary()

    def summary(self) -> TrafficSummary:
        """Counts so far."""
        with self._lock:
            return TrafficSummary(
                predictions=self._sent,
                feedback=self._feedback,
                statuses=dict(self._statuses),
                by_backend=dict(self._backends),
                skipped_pairs=len(self._unservable),
                duration_s=round((self._ended or time.monotonic()) - self._started, 3),
            )

    def __enter__(self) -> TrafficGenerator:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ worker
    def _take_budget(self) -> bool:
        with self._lock:
            if self._sent >= self.max_requests:
                return False
            self._sent += 1
            return True

    def _record(self, response: httpx.Response | None) -> int:
        status = NO_ANSWER if response is None else response.status_code
        with self._lock:
            self._statuses[status] += 1
            if response is not None:
                self._backends[response.headers.get("x-metarec-backend", "direct")] += 1
        return status

    def _post(self, client: httpx.Client, path: str, body: dict) -> int:
        try:
            response = client.post(f"{self.url}{path}", json=body)
        except httpx.HTTPError:
            response = None
        return self._record(response)

    def _run(self, index: int) -> None:
        rng = random.Random(self.seed * 1_000 + index)
        deadline = self._started + self.deadline_s
        # Each thread keeps its share of the rate: one prediction every `gap` seconds.
        gap = self.threads / self.rate_per_s if self.rate_per_s else 0.0
        next_at = time.monotonic()
        with httpx.Client(timeout=self.timeout_s) as client:
            while not self._stop.is_set() and time.monotonic() < deadline:
                if gap:
                    wait = next_at - time.monotonic()
                    if wait > 0 and self._stop.wait(wait):
                        return
                    next_at = max(next_at + gap, time.monotonic() - gap)
                if len(self._unservable) >= self._pairs:
                    return  # nothing left that the services can answer
                user, item, rating = rng.choice(self.rows)
                if (user, item) in self._unservable:
                    continue
                if not self._take_budget():
                    return
                status = self._post(client, "/predict", {"user_id": user, "item_ids": [item]})
                if status == 404:
                    # The model or the online store does not know this user or item: a client
                    # error by contract, not a fault of the service; stop asking for it.
                    with self._lock:
                        self._unservable.add((user, item))
                    continue
                if status != 200:
                    continue
                feedback = {"events": [{"user_id": user, "item_id": item, "rating": rating}]}
                if self._post(client, "/feedback", feedback) == 200:
                    with self._lock:
                        self._feedback += 1


def replay_rows(training_set: Path, *, limit: int = 5_000, seed: int = 0) -> list[Row]:
    """A seeded sample of ``(user, item, rating)`` rows of a training set to replay.

    Args:
        training_set: Parquet training set (Feast historical retrieval).
        limit: Most rows to return.
        seed: Seed of the sample.

    Returns:
        Up to ``limit`` rows.
    """
    from metarec.features.training_set import load_training_set

    frame, _ = load_training_set(training_set)
    frame = frame[["user_id", "item_id", "rating"]].dropna()
    if len(frame) > limit:
        frame = frame.sample(n=limit, random_state=seed)
    return [
        (int(user), int(item), float(rating))
        for user, item, rating in frame.itertuples(index=False)
    ]
