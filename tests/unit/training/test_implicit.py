"""Implicit events become the model's interactions: positive events, first per user and item."""

from __future__ import annotations

import pandas as pd
import pytest
from metarec.errors import ModelInputsError
from metarec.training.implicit import LIKED_VALUE, is_event_training_set, positive_interactions
from metarec.training.preparation import interactions


def _events(rows: list[tuple[int, int, int, int]]) -> pd.DataFrame:
    """(user, item, day, label) rows as an event training set."""
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "day", "label"])
    stamps = pd.Timestamp("2026-01-01", tz="UTC") + pd.to_timedelta(frame.pop("day"), unit="D")
    return frame.assign(event_timestamp=stamps, weight=1.0)


def test_positive_events_once_per_item_in_time_order_rated_liked():
    df = _events(
        [
            (1, 10, 3, 1),  # a repeat of item 10, later: dropped
            (1, 10, 1, 1),
            (1, 11, 2, 0),  # a view: not positive, not used
            (1, 12, 4, 1),
            (2, 10, 0, 0),
            (2, 13, 5, 1),
        ]
    )
    out = positive_interactions(df)
    assert list(zip(out["user_id"], out["item_id"], strict=True)) == [(1, 10), (1, 12), (2, 13)]
    assert (out["rating"] == LIKED_VALUE).all()
    assert out.loc[0, "event_timestamp"] == pd.Timestamp("2026-01-02", tz="UTC")  # the first


def test_a_set_without_a_positive_event_is_refused_in_one_line():
    with pytest.raises(ModelInputsError, match="no positive event") as caught:
        positive_interactions(_events([(1, 10, 0, 0), (2, 11, 1, 0)]))
    assert "positive: " in caught.value.fix


def test_ratings_pass_through_and_events_are_recognised_by_their_label():
    ratings = pd.DataFrame({"user_id": [1], "item_id": [2], "rating": [3]})
    assert not is_event_training_set(ratings)
    assert interactions(ratings) is ratings
    events = _events([(1, 10, 0, 1)])
    assert is_event_training_set(events)
    assert interactions(events)["rating"].tolist() == [LIKED_VALUE]
