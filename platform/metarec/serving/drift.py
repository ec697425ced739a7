"""Live drift of the service's traffic against its version's training reference.

Each ``/recommend`` and ``/predict`` request adds one row of bin counts to a window of the
latest ``serving.drift_window_requests`` requests (:class:`WindowedCounts`): its support size's
bin, its support items' popularity bins and, for ``/recommend``, its served scores' bins. Adding
a row is O(bins) (a ring buffer with running totals: nothing is re-scanned); the gauges are
recomputed from the totals at most every ``serving.drift_refresh_seconds``, by the first
request after that time, so a request pays for at most three PSIs over a dozen bins now and
then (tens of µs), never for the window.

The bins are fixed by the reference (:class:`~metarec.training.drift_profile.DriftReference`,
built from support-sized samples of the training users' first ratings): support sizes by the
version's trained support range (cold start, below, within, beyond it), the popularity decile
of each item seen in training (plus one bin for items it never saw) and quantile edges of its
served scores. Item popularity counts a request's *support* items only, as the reference counts
its sampled supports' items (``/predict``'s requested items are not support items). The
statistic is the population stability index (:func:`psi`); docs/serving.md ("Monitoring in
production") says why.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from bisect import bisect_right
from collections.abc import Callable, Sequence

import numpy as np
from prometheus_client import CollectorRegistry, Gauge

from metarec import metrics_contract as contract
from metarec.serving.features import ItemMatrix
from metarec.training.drift_profile import DriftReference

# Share given to an empty bin (on either side) so that the logarithm stays finite.
EPSILON = 1e-4
SUPPORT_SIZE, ITEM_POPULARITY, PREDICTED_SCORE = contract.DRIFT_STATISTICS
SCORE_BINS = 10  # the predicted-score bins: the reference scores' deciles

log = logging.getLogger(__name__)


def psi(expected: Sequence[float] | np.ndarray, actual: Sequence[float] | np.ndarray) -> float:
    """Population stability index of ``actual`` against ``expected`` over the same bins.

    ``PSI = Σ (aᵢ − eᵢ) · ln(aᵢ / eᵢ)`` over the bins' shares; both sides are normalised to
    shares first, and an empty bin counts as :data:`EPSILON`. 0 for identical distributions;
    the usual reading: < 0.1 stable, 0.1–0.25 a moderate shift, > 0.25 a major shift.

    Args:
        expected: The reference's counts or shares per bin.
        actual: The window's counts or shares per bin (same length).

    Returns:
        The index (NaN when either side is all zeros).
    """
    e = np.asarray(expected, dtype=np.float64)
    a = np.asarray(actual, dtype=np.float64)
    if e.shape != a.shape:
        raise ValueError(f"PSI needs the same bins on both sides, got {e.shape} and {a.shape}")
    if e.sum() <= 0 or a.sum() <= 0:
        return math.nan
    e = np.maximum(e / e.sum(), EPSILON)
    a = np.maximum(a / a.sum(), EPSILON)
    return float(np.sum((a - e) * np.log(a / e)))


def bin_of(edges: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Bin index of each value: bin ``j`` holds ``edges[j-1] <= v < edges[j]`` (len+1 bins)."""
    return np.searchsorted(edges, values, side="right")


class WindowedCounts:
    """Per-bin counts summed over the latest ``window`` rows (one row per request).

    A ring buffer of rows with running totals: :meth:`add` replaces the oldest row and updates
    the totals in O(bins), whatever the window's length.
    """

    def __init__(self, *, bins: int, window: int) -> None:
        """Keep the latest ``window`` rows of ``bins`` counts each."""
        self._rows = np.zeros((window, bins), dtype=np.int64)
        self._totals = np.zeros(bins, dtype=np.int64)
        self._next = 0
        self._filled = 0

    def add(self, counts: np.ndarray) -> None:
        """Add one row (evicting the oldest when the window is full)."""
        slot = self._next
        self._totals -= self._rows[slot]
        self._rows[slot] = counts
        self._totals += self._rows[slot]
        self._next = (slot + 1) % len(self._rows)
        self._filled = min(self._filled + 1, len(self._rows))

    @property
    def rows(self) -> int:
        """Rows in the window (requests)."""
        return self._filled

    def totals(self) -> np.ndarray:
        """The window's counts per bin (a copy)."""
        return self._totals.copy()


class DriftMonitor:
    """Windowed drift statistics of one served version, exported as Prometheus gauges.

    Without a reference only the cold-start share and the window's size are exported; the
    predicted-score PSI waits for :meth:`set_score_reference` (the engine computes the
    reference scores with the served model when it warms up).
    """

    def __init__(
        self,
        *,
        model_version: str,
        registry: CollectorRegistry,
        reference: DriftReference | None,
        window: int,
        min_requests: int,
        refresh_seconds: float,
        clock: Callable[[], float] = time.monotonic,
        on_refresh: Callable[[dict[str, float | None], int], None] | None = None,
    ) -> None:
        """Create the gauges and the window.

        Args:
            model_version: Value of the ``model_version`` label.
            registry: Where to register the gauges (the service metrics' registry).
            reference: The version's training reference (None: drift cannot be judged).
            window: Requests in the window (``serving.drift_window_requests``).
            min_requests: Requests needed before a PSI is set (``serving.drift_min_requests``).
            refresh_seconds: Recompute the gauges at most this often.
            clock: Monotonic seconds.
            on_refresh: Called after each refresh with the PSI per statistic and the window's
                size (:class:`~metarec.serving.drift_alerts.DriftAlarm`); errors are logged.
        """
        self.model_version = model_version
        self.registry = registry
        self.reference = reference
        self._min_requests = min_requests
        self._refresh_seconds = refresh_seconds
        self._clock = clock
        self._on_refresh = on_refresh
        self._refreshed_at = -math.inf
        self._lock = threading.Lock()
        self._item_bins: tuple[ItemMatrix, np.ndarray] | None = None  # (matrix, bin per row)
        # Bin 0: support size 0 (the cold start); the reference's edges above it.
        self._support_edges = list(reference.support_size_edges) if reference else [1.0]
        self._n_popularity = len(reference.item_popularity_shares) if reference else 0
        self._score_edges: np.ndarray | None = None
        self._score_shares: np.ndarray | None = None
        n_support = len(self._support_edges) + 1
        self._offsets = (0, n_support, n_support + self._n_popularity)
        # Room for the score bins (at most 10: deciles), fixed later by set_score_reference.
        self._width = self._offsets[2] + SCORE_BINS
        self.window = WindowedCounts(bins=self._width, window=window)
        self._create_gauges(registry)

    def _create_gauges(self, registry: CollectorRegistry) -> None:
        """The drift gauges; the window's size at 0 and the reference's cold share when known."""
        version = [contract.MODEL_VERSION]
        self.psi = Gauge(
            contract.DRIFT_PSI,
            "Population stability index of the request window vs the training reference.",
            [contract.MODEL_VERSION, contract.STATISTIC],
            multiprocess_mode="mostrecent",
            registry=registry,
        )
        self.cold_start_share = Gauge(
            contract.COLD_START_SHARE,
            "Share of the window's requests with an empty support set (cold start).",
            version,
            multiprocess_mode="mostrecent",
            registry=registry,
        )
        self.reference_cold_start_share = Gauge(
            contract.REFERENCE_COLD_START_SHARE,
            "Share of cold-start users in the training reference.",
            version,
            multiprocess_mode="mostrecent",
            registry=registry,
        )
        self.window_requests = Gauge(
            contract.DRIFT_WINDOW_REQUESTS,
            "Requests in the current drift window.",
            version,
            multiprocess_mode="mostrecent",
            registry=registry,
        )
        self.window_requests.labels(self.model_version).set(0)
        if self.reference is not None and self.reference.cold_start_share is not None:
            share = self.reference.cold_start_share
            self.reference_cold_start_share.labels(self.model_version).set(share)

    def set_score_reference(self, scores: np.ndarray) -> None:
        """Fix the predicted-score bins from reference scores (deciles) and their shares."""
        scores = np.asarray(scores, dtype=np.float64)
        if len(scores) == 0:
            return
        edges = np.unique(np.quantile(scores, np.linspace(0.1, 0.9, SCORE_BINS - 1)))
        counts = np.bincount(bin_of(edges, scores), minlength=len(edges) + 1)
        with self._lock:
            self._score_edges = edges
            self._score_shares = counts / counts.sum()

    def _bins_of(self, items: ItemMatrix) -> np.ndarray:
        """The popularity bin of each row of ``items`` (cached per item matrix)."""
        cached = self._item_bins
        if cached is not None and cached[0] is items:
            return cached[1]
        assert self.reference is not None
        bins = self.reference.row_bins(items.item_ids)
        self._item_bins = (items, bins)
        return bins

    def record(
        self, items: ItemMatrix, support_rows: np.ndarray, *, scores: np.ndarray | None = None
    ) -> None:
        """Add one answered request to the window; refresh the gauges when they are due.

        Args:
            items: The item matrix the rows refer to.
            support_rows: The request's support set (rows of ``items``; empty: cold start):
                its size and its items' popularity are what the reference measured.
            scores: The scores served (``/recommend``'s list), if any.
        """
        counts = np.zeros(self._width, dtype=np.int64)
        counts[bisect_right(self._support_edges, len(support_rows))] = 1
        if self._n_popularity and len(support_rows):
            start = self._offsets[1]
            hist = np.bincount(self._bins_of(items)[support_rows], minlength=self._n_popularity)
            counts[start : start + self._n_popularity] = hist
        edges = self._score_edges
        if scores is not None and len(scores) and edges is not None:
            hist = np.bincount(bin_of(edges, scores), minlength=len(edges) + 1)
            counts[self._offsets[2] : self._offsets[2] + len(hist)] = hist
        with self._lock:
            self.window.add(counts)
        if self._clock() - self._refreshed_at >= self._refresh_seconds:
            self.refresh()

    def values(self) -> dict[str, float | None]:
        """The PSI of each statistic over the current window (None: not judged)."""
        with self._lock:
            totals = self.window.totals()
            requests = self.window.rows
        found: dict[str, float | None] = dict.fromkeys(contract.DRIFT_STATISTICS)
        reference = self.reference
        if reference is None or requests < self._min_requests:
            return found
        start, pop, score = self._offsets
        # Over the warm requests: the cold start (bin 0) is the cold-start share's own series,
        # and a reference of interactions has none, so any cold-start share would read as drift.
        warm = slice(start + 1, pop)
        found[SUPPORT_SIZE] = psi(reference.support_size_shares[1:], totals[warm])
        found[ITEM_POPULARITY] = psi(reference.item_popularity_shares, totals[pop:score])
        if self._score_shares is not None:
            bins = len(self._score_shares)
            found[PREDICTED_SCORE] = psi(self._score_shares, totals[score : score + bins])
        return {key: None if v is None or math.isnan(v) else v for key, v in found.items()}

    def refresh(self) -> None:
        """Recompute every gauge from the window's totals."""
        self._refreshed_at = self._clock()
        with self._lock:
            requests = self.window.rows
            cold = int(self.window.totals()[0])
        version = self.model_version
        self.window_requests.labels(version).set(requests)
        if requests:
            self.cold_start_share.labels(version).set(cold / requests)
        values = self.values()
        for statistic, value in values.items():
            if value is not None:
                self.psi.labels(version, statistic).set(value)
        if self._on_refresh is not None:
            try:
                self._on_refresh(values, requests)
            except Exception:  # an alarm must never fail a request
                log.exception("drift: the refresh hook failed")
