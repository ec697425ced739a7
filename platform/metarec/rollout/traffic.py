"""Generated traffic for a local canary: replay users as recommendations and feedback.

A canary needs requests (for the error and latency checks) and feedback (for online MAE and
online hit rate). On a cluster, users provide both. Locally (the quickstart, the retraining
pipeline on a laptop, the tests) :class:`TrafficGenerator` replays real users' ratings (or, for
a training set of implicit events, their positive interactions) through the router. One
*visit* of a user is:

1. ``POST /recommend`` with ``user_id``, ``support`` = the user's first ``support_size``
   ratings (by timestamp when the rows carry one, else in the order given) and ``k``;
2. ``POST /feedback`` with the user's later ratings (at most ``feedback_size``).

Every request carries ``headers`` (the services' feedback token: without it they refuse
feedback and remember no list or prediction to score it against).
The service that answered (routing is sticky per user) scores each rated event against its own
prediction (online MAE, versions that predict ratings only) and counts a hit when a liked item
(rating ≥ 4, or an event without a rating: a positive interaction) was in the list it just
served (online hit rate).

A row whose rating is None is a positive interaction (an implicit event): it is sent without a
``rating`` key, as a support item (``{"item_id": …}``) or as feedback
(``{"user_id": …, "item_id": …}``); only event versions accept unrated support sets. Ids are
replayed as the training set holds them: integers, or a team's text ids sent as JSON strings.

Traffic is bounded three ways (a visit budget, a deadline and an optional rate) and every
request's outcome is kept, so a caller can check that none was lost.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from metarec.errors import DataFormatError

if TYPE_CHECKING:
    import pandas as pd

Id = int | str  # an id as the training set holds it: an integer, or a team's text id
# (user_id, item_id, rating); rating None: a positive interaction (implicit event), no rating.
Row = tuple[Id, Id, float | None]
TimedRow = tuple[Id, Id, float | None, float]  # (user_id, item_id, rating, timestamp)
# Status code of a request that got no answer (connection refused, reset, timed out).
NO_ANSWER = 0
# A rating at or above this is a positive event (what the service counts hits of).
POSITIVE_RATING = 4.0


@dataclass(frozen=True)
class UserVisit:
    """What one visit of a user sends: the support set, then the later ratings as feedback.

    A rating of None is a positive interaction: it is sent without a ``rating`` key.
    """

    user_id: Id
    support: tuple[tuple[Id, float | None], ...]  # (item, rating), oldest first
    later: tuple[tuple[Id, float | None], ...]  # (item, rating) after the support, none in it


def is_positive(rating: float | None) -> bool:
    """Whether feedback counts as a positive event: liked (rating ≥ 4) or unrated (implicit)."""
    return rating is None or rating >= POSITIVE_RATING


def replay_id(value: Any) -> Id:
    """An id as a request body carries it: an int (numpy integers too), else its text."""
    import numpy as np

    if isinstance(value, str):
        return value
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value)
    return str(value)


def _entry(item: Id, rating: float | None) -> dict[str, float | Id]:
    """A support item or feedback event body: ``rating`` only when the row has one."""
    return {"item_id": item} if rating is None else {"item_id": item, "rating": rating}


def user_visits(
    rows: Sequence[Row | TimedRow], *, support_size: int, feedback_size: int
) -> list[UserVisit]:
    """Split each user's ratings into a support set and later ratings.

    Args:
        rows: ``(user, item, rating)`` in time order per user, or ``(user, item, rating,
            timestamp)`` (sorted by timestamp here; ties keep their order). A rating of None
            is a positive interaction (an implicit event).
        support_size: Most ratings in the support set; a user with fewer than
            ``support_size + 1`` ratings keeps their last one(s) for feedback.
        feedback_size: Most later ratings sent as feedback.

    Returns:
        One visit per user with at least one later rating not in their support set, by user id
        (integer or text ids, as the rows hold them).
    """
    timed = all(len(row) == 4 for row in rows)
    by_user: dict[Id, list[tuple[float, Id, float | None]]] = {}
    for n, row in enumerate(rows):
        stamp = row[-1]
        when = float(stamp) if timed and stamp is not None else float(n)
        rating = None if row[2] is None else float(row[2])
        by_user.setdefault(replay_id(row[0]), []).append((when, replay_id(row[1]), rating))
    visits = []
    for user, history in sorted(by_user.items()):
        history.sort(key=lambda entry: entry[0])  # stable: ties keep the given order
        ratings = [(item, rating) for _, item, rating in history]
        cut = min(support_size, len(ratings) - 1)
        support = ratings[:cut]
        seen = {item for item, _ in support}
        later = [(item, rating) for item, rating in ratings[cut:] if item not in seen]
        if support and later:
            visits.append(UserVisit(user, tuple(support), tuple(later[:feedback_size])))
    return visits


@dataclass(frozen=True)
class TrafficSummary:
    """What the generator sent and what came back."""

    recommendations: int
    feedback: int
    positive_feedback: int
    statuses: dict[int, int]
    by_backend: dict[str, int]
    skipped_users: int
    duration_s: float

    @property
    def predictions(self) -> int:
        """Visits that asked the model for an answer (``/recommend``): the request budget."""
        return self.recommendations

    @property
    def requests(self) -> int:
        """Every request sent (recommendations and feedback)."""
        return sum(self.statuses.values())

    @property
    def server_errors(self) -> int:
        """Answers with a 5xx status or no answer at all."""
        return sum(n for status, n in self.statuses.items() if status >= 500 or status == 0)


@dataclass
class _Counts:
    """What the threads sent and got back so far (guarded by the generator's lock)."""

    sent: int = 0
    feedback: int = 0
    positive: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    backends: Counter[str] = field(default_factory=Counter)
    unservable: set[Id] = field(default_factory=set)


def _checked_visits(
    rows: Sequence[Row | TimedRow], *, threads: int, rate: float | None, sizes: tuple[int, ...]
) -> list[UserVisit]:
    """The visits to replay, after refusing a non-positive option or rows without a visit."""
    if threads < 1 or (rate is not None and rate <= 0):
        raise ValueError("threads must be ≥ 1 and rate_per_s > 0.")
    if min(sizes) < 1:
        raise ValueError("support_size, k and feedback_size must be ≥ 1.")
    support_size, _, feedback_size = sizes
    visits = user_visits(rows, support_size=support_size, feedback_size=feedback_size)
    if not visits:
        raise ValueError(
            "TrafficGenerator needs at least one user with two or more (user, item, rating) "
            "rows (or positive events): the first ones are the support set, a later one "
            "the feedback."
        )
    return visits


class TrafficGenerator:
    """Replays users' visits against a service URL from a few threads until stopped or spent."""

    def __init__(
        self,
        *,
        url: str,
        rows: Sequence[Row | TimedRow],
        threads: int = 2,
        max_requests: int = 50_000,
        deadline_s: float = 600.0,
        rate_per_s: float | None = None,
        seed: int = 0,
        timeout_s: float = 10.0,
        support_size: int = 10,
        k: int = 20,
        feedback_size: int = 50,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Describe the traffic (nothing is sent before :meth:`start`).

        Args:
            url: Base URL of the router (or one service).
            rows: ``(user_id, item_id, rating)`` in time order per user, or with a fourth
                field, a timestamp (see :func:`user_visits`); a rating of None is a positive
                interaction, sent without a ``rating`` key. Users are drawn at random with
                replacement; each visit is one ``/recommend`` and one ``/feedback``.
            threads: Concurrent clients.
            max_requests: Visit (``/recommend``) budget over all threads.
            deadline_s: Seconds after which the threads stop by themselves.
            rate_per_s: Highest visits per second over all threads (None: as fast as answers
                come).
            seed: Seed of the draw.
            timeout_s: Per-request timeout.
            support_size: Most ratings in a visit's support set (the user's first ones).
            k: Items asked of ``/recommend``.
            feedback_size: Most later ratings in a visit's ``/feedback``.
            headers: Sent with every request (``Authorization: Bearer <feedback token>``).

        Raises:
            ValueError: No user with a later rating after their support set, or a non-positive
                thread count, rate, support size, ``k`` or feedback size.
        """
        sizes = (support_size, k, feedback_size)
        self.visits = _checked_visits(rows, threads=threads, rate=rate_per_s, sizes=sizes)
        self.url = url.rstrip("/")
        self.k = k
        self.threads = threads
        self.max_requests = max_requests
        self.deadline_s = deadline_s
        self.rate_per_s = rate_per_s
        self.seed = seed
        self.timeout_s = timeout_s
        self.headers = dict(headers or {})
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._workers: list[threading.Thread] = []
        self._counts = _Counts()
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

    def wait(self, *, timeout_s: float = 30.0) -> bool:
        """Block until the threads end by themselves (visit budget or deadline spent).

        Returns:
            True when every thread ended, False when ``timeout_s`` passed first.
        """
        end = time.monotonic() + timeout_s
        for worker in self._workers:
            worker.join(timeout=max(0.0, end - time.monotonic()))
        if any(worker.is_alive() for worker in self._workers):
            return False
        if self._ended is None:
            self._ended = time.monotonic()
        return True

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
            counts = self._counts
            return TrafficSummary(
                recommendations=counts.sent,
                feedback=counts.feedback,
                positive_feedback=counts.positive,
                statuses=dict(counts.statuses),
                by_backend=dict(counts.backends),
                skipped_users=len(counts.unservable),
                duration_s=round((self._ended or time.monotonic()) - self._started, 3),
            )

    def __enter__(self) -> TrafficGenerator:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ worker
    def _take_budget(self) -> bool:
        with self._lock:
            if self._counts.sent >= self.max_requests:
                return False
            self._counts.sent += 1
            return True

    def _record(self, response: httpx.Response | None) -> int:
        status = NO_ANSWER if response is None else response.status_code
        with self._lock:
            self._counts.statuses[status] += 1
            if response is not None:
                self._counts.backends[response.headers.get("x-metarec-backend", "direct")] += 1
        return status

    def _post(self, client: httpx.Client, path: str, body: dict) -> int:
        try:
            response = client.post(f"{self.url}{path}", json=body)
        except httpx.HTTPError:
            response = None
        return self._record(response)

    def _skip_on_client_error(self, visit: UserVisit, status: int) -> bool:
        """On a 4xx stop replaying the user; True when that happened.

        A 4xx means the model or the online store does not know this user or one of their
        items; a 401/403 (feedback refused: no or a wrong token) is not the user's fault.
        """
        if 400 <= status < 500 and status not in (401, 403):
            with self._lock:
                self._counts.unservable.add(visit.user_id)
            return True
        return False

    def _visit(self, client: httpx.Client, visit: UserVisit) -> None:
        """``/recommend`` on the support set, then the later ratings as ``/feedback``."""
        support = [_entry(item, rating) for item, rating in visit.support]
        body = {"user_id": visit.user_id, "support": support, "k": self.k}
        status = self._post(client, "/recommend", body)
        if self._skip_on_client_error(visit, status) or status != 200:
            return
        events = [
            {"user_id": visit.user_id, **_entry(item, rating)} for item, rating in visit.later
        ]
        status = self._post(client, "/feedback", {"events": events})
        if self._skip_on_client_error(visit, status) or status != 200:
            return
        positive = sum(is_positive(rating) for _, rating in visit.later)
        with self._lock:
            self._counts.feedback += len(events)
            self._counts.positive += positive

    def _run(self, index: int) -> None:
        rng = random.Random(self.seed * 1_000 + index)
        deadline = self._started + self.deadline_s
        # Each thread keeps its share of the rate: one visit every `gap` seconds.
        gap = self.threads / self.rate_per_s if self.rate_per_s else 0.0
        next_at = time.monotonic()
        with httpx.Client(timeout=self.timeout_s, headers=self.headers) as client:
            while not self._stop.is_set() and time.monotonic() < deadline:
                if gap:
                    wait = next_at - time.monotonic()
                    if wait > 0 and self._stop.wait(wait):
                        return
                    next_at = max(next_at + gap, time.monotonic() - gap)
                if len(self._counts.unservable) >= len(self.visits):
                    return  # nothing left that the services can answer
                visit = rng.choice(self.visits)
                if visit.user_id in self._counts.unservable:
                    continue
                if not self._take_budget():
                    return
                self._visit(client, visit)


def replay_rows(training_set: Path, *, limit: int = 5_000, seed: int = 0) -> list[Row]:
    """The ratings (or positive events) of a seeded sample of users, in time order per user.

    Whole users are sampled (a visit needs a user's history: their first ratings as the
    support set, later ones as feedback), until ``limit`` rows; at least one user.

    A training set of implicit events (no ``rating`` column; ``label`` 1 for a positive
    event, 0 otherwise) is replayed as each user's positive events: the first occurrence of
    each (user, item), rating None. Events that are not positive are not replayed (the model
    does not use them, and a service counts feedback without a rating as positive).

    Args:
        training_set: Parquet training set (Feast historical retrieval).
        limit: Most rows to return (a first user with more is returned whole).
        seed: Seed of the sample.

    Returns:
        ``(user, item, rating)`` rows grouped by user, each user's oldest first; rating None
        for the positive events of an event training set. Ids as the training set holds them
        (ints, or a team's text ids as ``str``).

    Raises:
        DataFormatError: The training set has neither a ``rating`` nor a ``label`` column.
    """
    from metarec.features.training_set import load_training_set

    frame, _ = load_training_set(training_set)
    order = [c for c in ("user_id", "event_timestamp", "item_id") if c in frame.columns]
    frame = frame.sort_values(order, kind="stable")
    if "rating" in frame.columns:
        frame = frame.dropna(subset=["user_id", "item_id", "rating"])[
            ["user_id", "item_id", "rating"]
        ]
    else:
        frame = _positive_events(frame, training_set)
    sizes = frame.groupby("user_id", sort=True).size()
    users = list(sizes.index)
    random.Random(seed).shuffle(users)
    chosen: list[Any] = []
    total = 0
    for user in users:
        if chosen and total + int(sizes[user]) > limit:
            continue
        chosen.append(user)
        total += int(sizes[user])
    frame = frame[frame["user_id"].isin(set(chosen))]
    return [
        (replay_id(user), replay_id(item), None if rating is None else float(rating))
        for user, item, rating in frame.itertuples(index=False)
    ]


def _positive_events(frame: pd.DataFrame, training_set: Path) -> pd.DataFrame:
    """``user_id, item_id, rating=None``: each (user, item)'s first positive event, in order.

    Raises:
        DataFormatError: No ``label`` column either.
    """
    if "label" not in frame.columns:
        raise DataFormatError(
            training_set,
            problem="the training set has neither a rating column nor a label column "
            "(implicit events), so there is nothing to replay.",
            fix="build it again with `metarec features training-set` from ingested ratings "
            "or events.",
        )
    positive = frame.dropna(subset=["user_id", "item_id"])
    positive = positive[positive["label"] == 1]
    positive = positive.drop_duplicates(subset=["user_id", "item_id"], keep="first")
    positive = positive[["user_id", "item_id"]].copy()
    positive["rating"] = None
    return positive
