"""Online quality: absolute error of the service's predictions against observed feedback.

Feedback events are scored against the prediction this service last returned for the same
(user, item) — kept in a bounded memory — and, when it has none, against a prediction made on
the fly (adapting to the user's recent ratings in Feast, as ``/recommend`` does for a user id).
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque


class PredictionMemory:
    """The last predicted rating per (user, item), least recently written forgotten first."""

    def __init__(self, *, capacity: int) -> None:
        """Remember at most ``capacity`` pairs (0: remember nothing)."""
        self._capacity = capacity
        self._data: OrderedDict[tuple[int, int], float] = OrderedDict()
        self._lock = threading.Lock()

    def remember(self, user_id: int, items: list[int], ratings: list[float]) -> None:
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

    def get(self, user_id: int, item_id: int) -> float | None:
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

    def add(self, errors: list[float]) -> float:
        """Add absolute errors; return the current MAE."""
        with self._lock:
            self._errors.extend(errors)
            return self.value_unlocked()

    def value_unlocked(self) -> float:
        """The current MAE (0.0 before any feedback)."""
        return sum(self._errors) / len(self._errors) if self._errors else 0.0
