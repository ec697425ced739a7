"""Online quality: the service's answers judged against observed feedback.

* **Online MAE.** Feedback events are scored against the prediction this service last returned
  for the same (user, item) — kept in a bounded memory — and, when it has none, against a
  prediction made on the fly (adapting to the user's recent ratings in Feast, as
  ``/recommend`` does for a user id).
  Only events that carry a rating are scored, and only by versions that predict ratings.
* **Online hit rate.** The last list ``/recommend`` served to each user is kept in a bounded
  memory; a positive feedback event (a rating ≥ 4, or an event without a rating: an observed
  positive interaction) is a hit when its item was in that list.
* **Offline quality.** The version's MAE and hit rate from its card's evaluation
  (:func:`offline_quality`), exported beside the online ones so that an alert can compare them.

Users and items are keyed by their ids as served: integers, or a team's text ids.
"""

from __future__ import annotations

import threading
from array import array
from bisect import bisect_left
from collections import OrderedDict, deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

Id = int | str  # an id as served: an integer, or a team's text id


class PredictionMemory:
    """The last predicted rating per (user, item), least recently written forgotten first."""

    def __init__(self, *, capacity: int) -> None:
        """Remember at most ``capacity`` pairs (0: remember nothing)."""
        self._capacity = capacity
        self._data: OrderedDict[tuple[Id, Id], float] = OrderedDict()
        self._lock = threading.Lock()

    def remember(self, user_id: Id, items: Sequence[Id], ratings: list[float]) -> None:
        """Store predictions for ``user_id``."""
        if self._capacity <= 0:
            return
        with self._lock:
            for item, rating in zip(items, ratings, strict=True):
                key = (user_id, item)
                self._data[key] = rating
                self._data.move_to_end(key)
            while len(self._data) > self._capacity:
                self._data.popitem(last=False)

    def get(self, user_id: Id, item_id: Id) -> float | None:
        """The remembered prediction, or None."""
        with self._lock:
            return self._data.get((user_id, item_id))

    def __len__(self) -> int:
        return len(self._data)


class RollingMAE:
    """Mean absolute error over the last ``window`` scored events."""

    def __init__(self, *, window: int) -> None:
        """Keep the last ``window`` errors."""
        self._errors: deque[float] = deque(maxlen=window)
        self._lock = threading.Lock()

    def add(self, errors: list[float]) -> float | None:
        """Add absolute errors; return the current MAE (None: no event scored yet)."""
        with self._lock:
            self._errors.extend(errors)
            return self.value_unlocked()

    def value_unlocked(self) -> float | None:
        """The current MAE (None before any scored feedback: unknown, not perfect)."""
        return sum(self._errors) / len(self._errors) if self._errors else None


# A feedback rating at or above this is a positive event (the user liked the item).
POSITIVE_RATING = 4.0


def is_positive(rating: float | None) -> bool:
    """Whether a feedback event is positive: no rating (an interaction) or a rating ≥ 4."""
    return rating is None or rating >= POSITIVE_RATING


class ServedLists:
    """The last list ``/recommend`` served to each user, least recently served forgotten first.

    Each list of integer ids is kept as a sorted ``array('q')`` (8 bytes per item; ≈ 0.25 KB
    per user at ``k = 20``), so membership is a binary search; a list of text ids is a
    frozenset.
    """

    def __init__(self, *, capacity: int) -> None:
        """Remember the lists of at most ``capacity`` users (0: remember none)."""
        self._capacity = capacity
        self._data: OrderedDict[Id, array[int] | frozenset[Id]] = OrderedDict()
        self._lock = threading.Lock()

    def remember(self, user_id: Id, items: Sequence[Id]) -> None:
        """Replace ``user_id``'s last served list with ``items``."""
        if self._capacity <= 0:
            return
        served: array[int] | frozenset[Id]
        if all(isinstance(i, int) for i in items):
            served = array("q", sorted(set(items)))  # type: ignore[arg-type]  # ascending ints
        else:  # a team's text ids
            served = frozenset(items)
        with self._lock:
            self._data[user_id] = served
            self._data.move_to_end(user_id)
            while len(self._data) > self._capacity:
                self._data.popitem(last=False)

    def contains(self, user_id: Id, item_id: Id) -> bool | None:
        """Whether ``item_id`` was in the last list served to ``user_id`` (None: no list)."""
        with self._lock:
            served = self._data.get(user_id)
        if served is None:
            return None
        if isinstance(served, frozenset):
            return item_id in served
        if not isinstance(item_id, int):  # a text id is never in a list of integer ids
            return False
        at = bisect_left(served, item_id)
        return at < len(served) and served[at] == item_id

    def __len__(self) -> int:
        return len(self._data)


@dataclass(frozen=True)
class HitCount:
    """What one batch of feedback events added to the online hit rate."""

    positives: int  # positive events of users who had been served a list
    hits: int  # of which the item was in that list
    rate: float | None  # rolling hit rate after the batch (None: no positive event yet)


class OnlineHitRate:
    """Online hit rate: the share of liked feedback items that were in the list served.

    A feedback event is *positive* when it carries no rating (an observed interaction: a click,
    a purchase) or its rating is ≥ :data:`POSITIVE_RATING`; it is a *hit*
    when its item was in the last list ``/recommend`` served to that user. Positive events of
    users this service never served a list (or whose list was forgotten, or not yet served,
    e.g. a user the router moved here between their ``/recommend`` and their ``/feedback``)
    are not counted at all: without a list there is nothing to judge. The rolling rate covers
    the last ``window`` counted positive events.
    """

    def __init__(self, *, capacity: int, window: int) -> None:
        """Size the memory and the window.

        Args:
            capacity: Users whose last served list is remembered (0: none; nothing counts).
            window: Positive events in the rolling hit rate.
        """
        self.lists = ServedLists(capacity=capacity)
        self._outcomes: deque[bool] = deque(maxlen=window)
        self._lock = threading.Lock()

    def served(self, user_id: Id, items: Sequence[Id]) -> None:
        """Remember the list just served to ``user_id``."""
        self.lists.remember(user_id, items)

    def score(self, events: Iterable[tuple[Id, Id, float | None]]) -> HitCount:
        """Count the positive events and hits of ``(user, item, rating)`` feedback events.

        A rating of None is an event without a rating (a positive interaction).

        Returns:
            The counted positives and hits, and the rolling hit rate after them.
        """
        outcomes = [
            hit
            for user, item, rating in events
            if is_positive(rating) and (hit := self.lists.contains(user, item)) is not None
        ]
        with self._lock:
            self._outcomes.extend(outcomes)
            rate = sum(self._outcomes) / len(self._outcomes) if self._outcomes else None
        return HitCount(positives=len(outcomes), hits=sum(outcomes), rate=rate)


# The offline cells the online quality is compared with: new users adapting from a few ratings
# (what the service does), the served methods' numbers in the card's evaluation tables.
OFFLINE_SCENARIO = "new_user"
OFFLINE_HIT_METRIC = "hit@10"


def _mean_of(table: Mapping[str, Any], method: str, metric: str) -> float | None:
    """Mean of ``table[scenario][cell][method][metric]`` over the new-user scenario's cells.

    Every scenario's cells when the table has no new-user scenario; None when no cell has it.
    """
    scenarios = [table[OFFLINE_SCENARIO]] if OFFLINE_SCENARIO in table else list(table.values())
    values = [
        float(cell[method][metric])
        for cells in scenarios
        for cell in cells.values()
        if metric in cell.get(method, {})
    ]
    return sum(values) / len(values) if values else None


def offline_quality(
    metrics: Mapping[str, Any],
    ranking: Mapping[str, Any],
    *,
    rating_method: str | None,
    ranking_method: str = "ranker",
) -> tuple[float | None, float | None]:
    """The version's offline MAE and hit rate, from its model card's evaluation tables.

    Args:
        metrics: The card's ``metrics`` (``[scenario][support size][method][metric]``).
        ranking: The card's ``ranking`` table (``[scenario][cell][method][metric]``).
        rating_method: The method that serves ratings (``factor_map`` or the card's
            algorithm); None: the version predicts no ratings.
        ranking_method: The ranking table's method that serves the lists.

    Returns:
        ``(mae, hit rate @10)``, each the mean over the new-user cells; None when absent.
    """
    mae = None if rating_method is None else _mean_of(metrics, rating_method, "mae")
    return mae, _mean_of(ranking, ranking_method, OFFLINE_HIT_METRIC)
