"""Drift statistics of the adaptation service: PSI, the request window, the monitor's gauges."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from metarec import metrics_contract as contract
from metarec.serving.drift import EPSILON, DriftMonitor, WindowedCounts, psi
from metarec.serving.drift_reference import DriftReference
from metarec.serving.features import ItemMatrix
from prometheus_client import CollectorRegistry

# Each monitor its own version tag (multiprocess mode would merge equal label sets).
VERSIONS = itertools.count(1)


def test_psi_of_identical_distributions_is_zero():
    assert psi([0.1, 0.2, 0.7], [0.1, 0.2, 0.7]) == 0.0
    assert psi([10, 20, 70], [1, 2, 7]) == pytest.approx(0.0)  # counts are normalised first


def test_psi_of_a_known_shift_has_the_known_value():
    # (0.25 - 0.5) ln(0.25/0.5) + (0.75 - 0.5) ln(0.75/0.5)
    expected = 0.25 * math.log(2) + 0.25 * math.log(1.5)
    assert psi([0.5, 0.5], [0.25, 0.75]) == pytest.approx(expected)
    assert psi([0.5, 0.5], [0.25, 0.75]) == pytest.approx(0.2747, abs=1e-4)


def test_psi_smooths_empty_bins_with_epsilon():
    value = psi([0.5, 0.5, 0.0], [0.5, 0.0, 0.5])
    # bin 2: (EPS - 0.5) ln(EPS/0.5); bin 3: (0.5 - EPS) ln(0.5/EPS)
    expected = 2 * (0.5 - EPSILON) * math.log(0.5 / EPSILON)
    assert math.isfinite(value) and value == pytest.approx(expected)


def test_psi_refuses_other_bins_and_is_nan_without_data():
    with pytest.raises(ValueError, match="same bins"):
        psi([0.5, 0.5], [1.0])
    assert math.isnan(psi([0.5, 0.5], [0, 0]))


def test_the_window_keeps_the_latest_rows_only():
    window = WindowedCounts(bins=2, window=3)
    for row in ([1, 0], [0, 1], [2, 2]):
        window.add(np.array(row))
    assert window.rows == 3 and window.totals().tolist() == [3, 3]
    window.add(np.array([5, 0]))  # evicts [1, 0]
    assert window.rows == 3 and window.totals().tolist() == [7, 3]
    window.add(np.array([0, 0]))  # evicts [0, 1]
    assert window.totals().tolist() == [7, 2]


def _items(n: int) -> ItemMatrix:
    ids = np.arange(1, n + 1, dtype=np.int64)
    return ItemMatrix(
        item_ids=ids,
        codes=np.zeros((n, 1), dtype=np.float32),
        index={int(i): k for k, i in enumerate(ids)},
        signature=("test",),
    )


def _reference() -> DriftReference:
    """Items 1-2 the head (decile 0, 60 %), 3-4 the tail (decile 1, 40 %); item 5 unseen."""
    return DriftReference(
        source="test",
        support_size_edges=[1.0, 3.0],
        support_size_shares=[0.0, 0.5, 0.5],
        cold_start_share=0.0,
        item_ids=[1, 2, 3, 4],
        item_bins=[0, 0, 1, 1],
        item_popularity_shares=[0.6, 0.4, 0.0],
    )


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _monitor(reference: DriftReference | None, **kwargs) -> tuple[DriftMonitor, str]:
    version = f"drift:v{next(VERSIONS)}"
    options = {"window": 10, "min_requests": 4, "refresh_seconds": 0.0, **kwargs}
    monitor = DriftMonitor(
        model_version=version, registry=CollectorRegistry(), reference=reference, **options
    )
    return monitor, version


def _sample(monitor: DriftMonitor, name: str, **labels: str) -> float | None:
    return monitor.registry.get_sample_value(
        name, {"model_version": monitor.model_version, **labels}
    )


def test_popularity_psi_is_zero_on_reference_traffic_and_large_on_the_tail():
    monitor, _ = _monitor(_reference())
    items = _items(5)
    for _ in range(5):  # 3 head and 2 tail items a request: the reference's 60 / 40
        monitor.record(items, np.array([0, 1, 0, 2, 3]))
    stable = _sample(monitor, contract.DRIFT_PSI, statistic="item_popularity")
    assert stable == pytest.approx(0.0, abs=1e-9)
    for _ in range(10):  # the whole window: tail items only
        monitor.record(items, np.array([2, 3, 2, 3, 2]))
    shifted = _sample(monitor, contract.DRIFT_PSI, statistic="item_popularity")
    assert shifted is not None and shifted > 0.25


def test_unseen_items_fall_in_their_own_bin():
    monitor, _ = _monitor(_reference())
    for _ in range(4):
        monitor.record(_items(5), np.array([4, 4]))  # row 4: item 5, never seen in training
    assert monitor.values()["item_popularity"] > 1.0


def test_no_psi_before_the_minimum_sample_but_the_window_and_cold_share_are_exported():
    monitor, _ = _monitor(_reference(), min_requests=4)
    items = _items(5)
    monitor.record(items, np.array([], dtype=np.int64))  # a cold start
    monitor.record(items, np.array([0, 1]))
    monitor.record(items, np.array([0, 1, 2]))
    assert _sample(monitor, contract.DRIFT_PSI, statistic="support_size") is None
    assert _sample(monitor, contract.DRIFT_WINDOW_REQUESTS) == 3
    assert _sample(monitor, contract.COLD_START_SHARE) == pytest.approx(1 / 3)
    assert _sample(monitor, contract.REFERENCE_COLD_START_SHARE) == 0.0
    monitor.record(items, np.array([0]))
    # support sizes 0, 2, 3, 1 in bins 0, 1, 2, 1: the warm requests' bins 1, 2 (2 and 1
    # requests) against the reference's 0.5 / 0.5; the cold start is its own series
    expected = psi([0.5, 0.5], [2, 1])
    assert _sample(monitor, contract.DRIFT_PSI, statistic="support_size") == pytest.approx(expected)


def test_without_a_reference_only_the_cold_share_and_window_are_exported():
    monitor, _ = _monitor(None)
    for size in (0, 0, 3, 5):
        monitor.record(_items(5), np.arange(size))
    assert _sample(monitor, contract.COLD_START_SHARE) == 0.5
    assert _sample(monitor, contract.DRIFT_WINDOW_REQUESTS) == 4
    for statistic in contract.DRIFT_STATISTICS:
        assert _sample(monitor, contract.DRIFT_PSI, statistic=statistic) is None
    assert _sample(monitor, contract.REFERENCE_COLD_START_SHARE) is None


def test_gauges_are_recomputed_on_the_timer_not_on_every_request():
    clock = _Clock()
    monitor, _ = _monitor(_reference(), refresh_seconds=10.0, clock=clock)
    items = _items(5)
    monitor.record(items, np.array([0]))  # the first request refreshes at once
    assert _sample(monitor, contract.DRIFT_WINDOW_REQUESTS) == 1
    clock.now = 5.0
    monitor.record(items, np.array([0]))
    assert _sample(monitor, contract.DRIFT_WINDOW_REQUESTS) == 1  # not due yet
    clock.now = 10.0
    monitor.record(items, np.array([0]))
    assert _sample(monitor, contract.DRIFT_WINDOW_REQUESTS) == 3


def test_predicted_score_bins_are_the_reference_scores_deciles():
    monitor, _ = _monitor(_reference(), window=50)
    reference_scores = np.linspace(0.0, 1.0, 1000)
    monitor.set_score_reference(reference_scores)
    items = _items(5)
    rng = np.random.default_rng(0)
    for _ in range(50):
        monitor.record(items, np.array([0]), scores=rng.uniform(0.0, 1.0, 10))
    assert monitor.values()["predicted_score"] < 0.1
    for _ in range(50):  # every served score above the reference's top decile
        monitor.record(items, np.array([0]), scores=rng.uniform(1.0, 2.0, 10))
    assert monitor.values()["predicted_score"] > 0.25
