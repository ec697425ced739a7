"""Normal new-user traffic must not read as drift; a real shift must.

A synthetic training set whose users have long histories (60 to 150 ratings) and whose early
ratings lean to popular items, as MovieLens users' do. Live traffic is drawn like requests:
new users' first ``k`` ratings (``k`` in the trained support range) and returning users' 20
most recent. Against the reference (:func:`~metarec.training.drift_profile.build_reference`)
their mix reads as stable and either alone as no major drift; tail items only, or supports far
beyond the range, read as drift.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from metarec.serving.drift import DriftMonitor
from metarec.serving.features import ItemMatrix
from metarec.training.drift_profile import DriftReference, build_reference
from prometheus_client import CollectorRegistry

N_ITEMS = 300
SUPPORT_MIN, SUPPORT_MAX = 3, 30
MODERATE, MAJOR = 0.1, 0.25
VERSIONS = itertools.count(1)


def _weights(power: float) -> np.ndarray:
    weights = (1.0 / np.arange(1, N_ITEMS + 1)) ** power
    return weights / weights.sum()


def _history(rng: np.random.Generator) -> np.ndarray:
    """A user's items in time order: the first 30 lean popular, the rest much less."""
    length = int(rng.integers(60, 151))
    early = rng.choice(N_ITEMS, size=30, replace=False, p=_weights(0.9))
    rest = np.setdiff1d(np.arange(N_ITEMS), early)
    late_p = _weights(0.7)[rest] / _weights(0.7)[rest].sum()
    late = rng.choice(rest, size=length - 30, replace=False, p=late_p)
    return np.concatenate([early, late]) + 1


def _training_set(users: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frames = []
    for user in range(users):
        items = _history(rng)
        frames.append(
            pd.DataFrame(
                {
                    "user_id": user,
                    "item_id": items,
                    "rating": 4.0,
                    "event_timestamp": pd.Timestamp("2026-01-01", tz="UTC")
                    + pd.to_timedelta(np.arange(len(items)), unit="h"),
                }
            )
        )
    return pd.concat(frames, ignore_index=True).sample(frac=1.0, random_state=0)  # unordered


@pytest.fixture(scope="module")
def reference() -> DriftReference:
    frame = _training_set(400, seed=0)
    return build_reference(
        frame, support_min=SUPPORT_MIN, support_max=SUPPORT_MAX, source="synthetic"
    )


def _catalogue() -> ItemMatrix:
    ids = np.arange(1, N_ITEMS + 1, dtype=np.int64)
    index = {int(i): n for n, i in enumerate(ids)}
    return ItemMatrix(ids, np.zeros((N_ITEMS, 1), np.float32), index, ("synthetic",))


def _psi(reference: DriftReference, supports: list[np.ndarray]) -> dict[str, float | None]:
    """The monitor's PSIs over a window of one request per support set (items, 1-based)."""
    monitor = DriftMonitor(
        model_version=f"falsealarm:v{next(VERSIONS)}",
        registry=CollectorRegistry(),
        reference=reference,
        window=len(supports),
        min_requests=1,
        refresh_seconds=1e9,
    )
    items = _catalogue()
    for support in supports:
        monitor.record(items, np.asarray(support, dtype=np.int64) - 1)
    return monitor.values()


def _new_users(users: int, seed: int) -> list[np.ndarray]:
    """New users' requests: their first k ratings, k in the support range."""
    rng = np.random.default_rng(seed)
    return [_history(rng)[: int(rng.integers(SUPPORT_MIN, SUPPORT_MAX + 1))] for _ in range(users)]


def _returning_users(users: int, seed: int) -> list[np.ndarray]:
    """Known users' requests: their 20 most recent ratings (what the online store keeps)."""
    rng = np.random.default_rng(seed)
    return [_history(rng)[-20:] for _ in range(users)]


def test_new_and_returning_users_together_read_as_stable(reference: DriftReference):
    # Against a reference of first ratings alone this mix read 0.21 (returning users' recent
    # ratings lean less to popular items than anyone's first ones).
    values = _psi(reference, [*_new_users(150, seed=1), *_returning_users(150, seed=6)])
    assert values["support_size"] is not None and values["support_size"] < MODERATE
    assert values["item_popularity"] is not None and values["item_popularity"] < MODERATE


def test_new_users_alone_are_no_major_drift(reference: DriftReference):
    # A traffic of nothing but brand-new users is a change of the mix, not a major shift.
    values = _psi(reference, _new_users(300, seed=1))
    assert values["support_size"] < MODERATE and values["item_popularity"] < MAJOR


def test_new_users_of_one_support_size_read_as_stable(reference: DriftReference):
    # Every request with exactly 10 ratings: a trained size, so no support-size drift.
    rng = np.random.default_rng(2)
    values = _psi(reference, [_history(rng)[:10] for _ in range(300)])
    assert values["support_size"] < MODERATE and values["item_popularity"] < MAJOR


def test_tail_only_traffic_reads_as_major_item_popularity_drift(reference: DriftReference):
    rng = np.random.default_rng(3)
    tail = np.arange(N_ITEMS // 2, N_ITEMS) + 1  # the less popular half of the catalogue
    supports = [rng.choice(tail, size=int(rng.integers(3, 31)), replace=False) for _ in range(300)]
    values = _psi(reference, supports)
    assert values["item_popularity"] > MAJOR
    assert values["support_size"] < MODERATE  # the sizes are normal


def test_supports_far_beyond_the_range_read_as_support_size_drift(reference: DriftReference):
    rng = np.random.default_rng(4)
    supports = [_history(rng)[: int(rng.integers(60, 101))] for _ in range(300)]
    assert _psi(reference, supports)["support_size"] > MAJOR


def test_a_share_of_cold_starts_is_not_support_size_drift(reference: DriftReference):
    # A quarter of the requests are brand-new users with no ratings (what the ranker is trained
    # for): the cold-start share says so; the support sizes of the others are normal.
    warm = _new_users(225, seed=5)
    values = _psi(reference, [*warm, *([np.array([], dtype=np.int64)] * 75)])
    assert values["support_size"] is not None and values["support_size"] < MODERATE
