"""Canary traffic for versions that learnt from implicit events: positive events, no ratings.

What the generator sends over HTTP is tested in ``tests/integration/test_rollout_traffic.py``;
the spec of an event canary in ``tests/unit/ops/test_canary.py``; its verdict in
``test_decide.py``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
from metarec.errors import DataFormatError
from metarec.features.training_set import TrainingSetManifest, manifest_path
from metarec.rollout.traffic import TrafficGenerator, is_positive, replay_rows, user_visits

# (user, item, label, event_type, seconds): given out of time order on purpose.
EVENTS = [
    (1, 10, 1, "click", 30),
    (1, 11, 0, "view", 10),  # not positive: never replayed
    (1, 12, 1, "purchase", 20),
    (1, 10, 1, "purchase", 40),  # item 10 again: only its first positive event is replayed
    (1, 13, 1, "click", 50),
    (2, 20, 1, "click", 5),
    (2, 21, 1, "click", 6),
    (3, 30, 0, "view", 1),  # no positive event: user 3 is not replayed
]


def write_training_set(folder: Path, frame: pd.DataFrame) -> Path:
    """``frame`` as a parquet training set with the manifest that load_training_set reads."""
    path = folder / "events.parquet"
    frame.to_parquet(path, index=False)
    manifest = TrainingSetManifest(
        path=str(path),
        fingerprint="test",
        rows=len(frame),
        columns=list(frame.columns),
        feature_service="metarec_training",
        feature_service_version="test",
        snapshot_id="test",
        feast_project="metarec",
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
        table_snapshot=True,
    )
    manifest_path(path).write_text(manifest.model_dump_json())
    return path


def events_frame() -> pd.DataFrame:
    start = pd.Timestamp("2026-01-01", tz="UTC")
    return pd.DataFrame(
        {
            "interaction_id": range(len(EVENTS)),
            "user_id": [user for user, *_ in EVENTS],
            "item_id": [item for _, item, *_ in EVENTS],
            "event_timestamp": [start + pd.Timedelta(seconds=s) for *_, s in EVENTS],
            "label": [label for _, _, label, *_ in EVENTS],
            "weight": [1.0] * len(EVENTS),
            "event_type": [kind for *_, kind, _ in EVENTS],
        }
    )


def test_an_event_training_set_replays_each_users_first_positive_events_in_time_order(tmp_path):
    path = write_training_set(tmp_path, events_frame())
    rows = replay_rows(path, limit=100, seed=1)
    assert sorted(rows) == [
        (1, 10, None),
        (1, 12, None),
        (1, 13, None),
        (2, 20, None),
        (2, 21, None),
    ]
    assert [item for user, item, _ in rows if user == 1] == [12, 10, 13]  # by event time
    assert rows == replay_rows(path, limit=100, seed=1)
    # Whole users are sampled: a limit of 3 rows keeps one of them, whole.
    [user] = {user for user, _, _ in replay_rows(path, limit=3, seed=0)}
    assert len(replay_rows(path, limit=3, seed=0)) == (3 if user == 1 else 2)


def test_replayed_events_become_visits_without_ratings(tmp_path):
    rows = replay_rows(write_training_set(tmp_path, events_frame()))
    visits = {visit.user_id: visit for visit in user_visits(rows, support_size=2, feedback_size=5)}
    assert visits[1].support == ((12, None), (10, None)) and visits[1].later == ((13, None),)
    assert visits[2].support == ((20, None),) and visits[2].later == ((21, None),)
    assert TrafficGenerator(url="http://127.0.0.1:9", rows=rows, support_size=2).visits
    # Unrated feedback is a positive interaction; rated feedback is positive from 4 up.
    assert [is_positive(r) for r in (None, 5.0, 4.0, 3.9)] == [True, True, True, False]


def test_a_training_set_with_neither_ratings_nor_labels_is_refused(tmp_path):
    path = write_training_set(tmp_path, events_frame().drop(columns=["label"]))
    with pytest.raises(DataFormatError, match="neither a rating column nor a label column"):
        replay_rows(path)


def text_ids(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame with a team's text ids: user 1 → ``c001``, item 10 → ``sku-010``."""
    out = frame.copy()
    out["user_id"] = [f"c{u:03d}" for u in out["user_id"]]
    out["item_id"] = [f"sku-{i:03d}" for i in out["item_id"]]
    return out


def test_text_ids_are_replayed_as_text(tmp_path):
    rows = replay_rows(write_training_set(tmp_path, text_ids(events_frame())), limit=100)
    assert sorted(rows) == [
        ("c001", "sku-010", None),
        ("c001", "sku-012", None),
        ("c001", "sku-013", None),
        ("c002", "sku-020", None),
        ("c002", "sku-021", None),
    ]
    assert all(type(u) is str and type(i) is str for u, i, _ in rows)
    visits = {visit.user_id: visit for visit in user_visits(rows, support_size=2, feedback_size=5)}
    assert visits["c001"].support == (("sku-012", None), ("sku-010", None))
    assert visits["c001"].later == (("sku-013", None),)


def test_a_rating_training_set_with_text_ids_is_replayed_as_text(tmp_path):
    frame = text_ids(events_frame()).drop(columns=["label", "weight", "event_type"])
    frame["rating"] = [5.0, 2.0, 4.0, 3.0, 1.0, 5.0, 4.0, 3.0]
    rows = replay_rows(write_training_set(tmp_path, frame), limit=100)
    assert [row for row in rows if row[0] == "c001"] == [
        ("c001", "sku-011", 2.0),  # by event time
        ("c001", "sku-012", 4.0),
        ("c001", "sku-010", 5.0),
        ("c001", "sku-010", 3.0),
        ("c001", "sku-013", 1.0),
    ]
    [visit] = [v for v in user_visits(rows, support_size=2, feedback_size=5) if v.user_id == "c001"]
    assert visit.support == (("sku-011", 2.0), ("sku-012", 4.0))
    assert visit.later == (("sku-010", 5.0), ("sku-010", 3.0), ("sku-013", 1.0))
