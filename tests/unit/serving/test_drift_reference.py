"""The drift reference of a training set, where the service finds it, and offline quality."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from metarec.features.training_set import TrainingSetManifest, manifest_path
from metarec.serving.drift_calibration import problem, reference_scores
from metarec.serving.drift_reference import (
    ReferenceUser,
    build_reference,
    find_training_set,
    load_drift_reference,
    popularity_deciles,
    support_size_bins,
)
from metarec.serving.features import ItemMatrix
from metarec.serving.quality import offline_quality
from metarec.serving.support import INTERACTION
from metarec.testing.registry import fixture_metrics, fixture_ranking
from metarec.training.drift_profile import first_ratings, support_windows


def test_popularity_deciles_follow_the_interaction_mass_head_first():
    # Shares 0.5, 0.3, 0.1, 0.05, 0.05: mass before each item 0, 0.5, 0.8, 0.9, 0.95.
    assert popularity_deciles(np.array([50, 30, 10, 5, 5])).tolist() == [0, 5, 8, 9, 9]


def test_support_size_bins_are_fixed_by_the_support_range():
    # Cold start, below the range (2), within it (3, 5, 30), beyond it (31, 60).
    sizes = np.array([0, 2, 3, 5, 30, 31, 60])
    edges, shares = support_size_bins(sizes, support_min=3, support_max=30)
    assert edges == [1.0, 3.0, 31.0]
    assert shares == pytest.approx([1 / 7, 1 / 7, 3 / 7, 2 / 7])
    # A range starting at 1 has no "below" bin.
    assert support_size_bins(sizes, support_min=1, support_max=30)[0] == [1.0, 31.0]


def _frame() -> pd.DataFrame:
    """Item 1 has 6 of 10 interactions; users 1 and 2, timestamps increasing with the item."""
    rows = [(1, 1), (1, 2), (1, 3), (1, 4), (2, 1), (2, 1), (2, 1), (2, 1), (2, 1), (2, 2)]
    return pd.DataFrame(
        {
            "user_id": [u for u, _ in rows],
            "item_id": [i for _, i in rows],
            "rating": [4.0] * len(rows),
            "event_timestamp": pd.date_range("2026-01-01", periods=len(rows), freq="h", tz="UTC"),
        }
    )


def test_build_reference_counts_the_sampled_supports_items_by_decile():
    frame = _frame()
    reference = build_reference(frame, support_min=3, support_max=3, source="unit", seed=0)
    assert reference.item_ids[0] == 1 and reference.item_bins[0] == 0  # the head
    assert reference.support_range == (3, 3)
    # Item deciles by the whole training set's mass: item 1 → 0, 2 → 6, 3 → 8, 4 → 9; the
    # shares are those of the sampled supports' items (3 per user: first or most recent).
    supports = support_windows(frame, support_min=3, support_max=3, seed=0)
    decile = {1: 0, 2: 6, 3: 8, 4: 9}
    expected = np.bincount([decile[i] for i in supports["item_id"]], minlength=11) / 6
    assert reference.item_popularity_shares == pytest.approx(expected.tolist())
    assert reference.item_popularity_shares[-1] == 0.0  # items never seen in training
    assert reference.cold_start_share == 0.0
    assert reference.support_size_shares == [0.0, 0.0, 1.0, 0.0]  # all within the range
    samples = {s.user_id: [i for i, _ in s.support] for s in reference.samples}
    for user, rows in supports.groupby("user_id"):
        assert samples[user] == rows["item_id"].tolist()  # in time order
    assert reference == reference.model_validate_json(reference.model_dump_json())


def test_each_support_is_a_users_first_or_most_recent_k_ratings_about_half_each():
    # 400 users, 50 interactions each in time order; the item id is the position in time.
    frame = pd.DataFrame(
        {
            "user_id": np.repeat(np.arange(400), 50),
            "item_id": np.tile(np.arange(50), 400),
            "event_timestamp": pd.Timestamp("2026-01-01", tz="UTC")
            + pd.to_timedelta(np.tile(np.arange(50), 400), unit="h"),
        }
    ).sample(frac=1.0, random_state=0)  # unordered: the timestamps order each user
    supports = support_windows(frame, support_min=3, support_max=30, seed=4)
    returning = 0
    for _, rows in supports.groupby("user_id"):
        items, k = rows["item_id"].tolist(), len(rows)
        assert 3 <= k <= 30
        assert items in (list(range(k)), list(range(50 - k, 50)))
        returning += items[0] > 0
    assert 160 <= returning <= 240
    sizes = supports.groupby("user_id").size()
    assert sizes.nunique() > 15
    assert support_windows(frame, support_min=3, support_max=30, seed=4).equals(supports)


def test_support_sizes_are_drawn_from_the_range_seeded():
    frame = pd.DataFrame({"user_id": np.repeat(np.arange(200), 50), "item_id": 1})
    supports = first_ratings(frame, support_min=3, support_max=30, seed=4)
    sizes = supports.groupby("user_id").size()
    assert sizes.min() >= 3 and sizes.max() <= 30 and sizes.nunique() > 15
    again = first_ratings(frame, support_min=3, support_max=30, seed=4)
    assert again.equals(supports)


def _write_training_set(folder: Path, name: str, fingerprint: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.parquet"
    _frame().to_parquet(path, index=False)
    manifest = TrainingSetManifest(
        path=str(path),
        fingerprint=fingerprint,
        rows=10,
        columns=list(_frame().columns),
        feature_service="meta_training",
        feature_service_version="1",
        snapshot_id="snap",
        feast_project="metarec",
        created_at=datetime(2026, 12, 1, tzinfo=UTC),
    )
    manifest_path(path).write_text(manifest.model_dump_json())
    return path


def test_the_versions_training_set_is_found_by_its_fingerprint(tmp_path: Path):
    _write_training_set(tmp_path, "older", "sha256:aaa")
    wanted = _write_training_set(tmp_path, "newer", "sha256:bbb")
    (tmp_path / "stray.parquet").write_bytes(b"not a training set")  # no manifest: skipped
    assert find_training_set(tmp_path, "sha256:bbb") == wanted
    reference = load_drift_reference(tmp_path, fingerprint="sha256:bbb", max_support_size=5)
    assert reference is not None and str(wanted) in reference.source


def test_no_reference_without_the_training_set(tmp_path: Path, caplog):
    _write_training_set(tmp_path, "other", "sha256:aaa")
    assert load_drift_reference(tmp_path, fingerprint="sha256:ccc", max_support_size=5) is None
    assert "metarec_drift_psi is not exported" in caplog.text
    assert find_training_set(tmp_path / "missing", "sha256:aaa") is None


def test_offline_quality_reads_the_served_methods_new_user_cells():
    metrics = fixture_metrics(algorithm="maml", mae=0.7)
    ranking = fixture_ranking(ranker=0.3)  # hit@10 = 2 x nDCG@20
    assert offline_quality(metrics, ranking, rating_method="maml") == pytest.approx((0.7, 0.6))
    mae, hit_rate = offline_quality({}, ranking, rating_method=None)  # an event version
    assert mae is None and hit_rate == pytest.approx(0.6)
    assert offline_quality(metrics, {}, rating_method="factor_map") == (None, None)


def _catalogue(n: int) -> ItemMatrix:
    ids = np.arange(1, n + 1, dtype=np.int64)
    index = {int(i): k for k, i in enumerate(ids)}
    return ItemMatrix(ids, np.zeros((n, 1), np.float32), index, ("t",))


def test_reference_scores_rank_each_users_catalogue_without_their_support():
    users = [
        ReferenceUser(user_id=1, support=[(2, 5.0), (99, 3.0)]),  # item 99: not in the catalogue
        ReferenceUser(user_id=2, support=[(1, None)]),
        ReferenceUser(user_id=3, support=[]),  # a cold start: every item a candidate
    ]
    seen: list[tuple] = []

    def score(problems):
        seen.append(tuple(len(p[4]) for p in problems))
        return [p[4].astype(float) for p in problems]  # the candidate rows as their scores

    top = reference_scores(
        users,
        _catalogue(5),
        codes=lambda user_id: np.zeros(1),
        score=score,
        interactions=False,
        k=2,
        batch=2,
    )
    assert seen == [(4, 4), (5,)]  # batches of 2; the support items are no candidates
    assert top.tolist() == [3.0, 4.0, 3.0, 4.0, 3.0, 4.0]
    _, _, rows, values, candidates = problem(
        _catalogue(5), users[0], np.zeros(1), interactions=True
    )
    assert rows.tolist() == [1] and values.tolist() == [INTERACTION]
    assert 1 not in candidates.tolist()
