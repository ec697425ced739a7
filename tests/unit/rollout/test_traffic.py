"""TrafficGenerator: how visits are built from rows (nothing is sent here).

The traffic itself (threads against a local HTTP stand-in) is tested in
``tests/integration/test_rollout_traffic.py``.
"""

from __future__ import annotations

import pytest
from metarec.rollout.traffic import TrafficGenerator, replay_rows, user_visits


def history(user: int, n: int, *, first_item: int = 100) -> list[tuple[int, int, float]]:
    """``n`` ratings of ``user`` in time order (items first_item, first_item + 1, …)."""
    return [(user, first_item + i, float(1 + i % 5)) for i in range(n)]


def test_rows_with_timestamps_are_replayed_in_time_order():
    # (user, item, rating, timestamp) given newest first: the support set is the oldest.
    rows = [(3, 10 + i, 4.0, 100.0 - i) for i in range(4)]
    generator = TrafficGenerator(
        url="http://127.0.0.1:9", rows=rows, max_requests=1, support_size=2
    )
    [visit] = generator.visits
    assert [item for item, _ in visit.support] == [13, 12]
    assert [item for item, _ in visit.later] == [11, 10]


def test_later_ratings_skip_support_items_and_are_capped():
    rows = [(1, 10, 5.0), (1, 11, 4.0), (1, 10, 3.0), (1, 12, 2.0), (1, 13, 1.0)]
    [visit] = user_visits(rows, support_size=2, feedback_size=1)
    assert visit.support == ((10, 5.0), (11, 4.0))
    assert visit.later == ((12, 2.0),)  # item 10 again is not feedback; capped at one
    assert user_visits([(1, 10, 5.0), (2, 11, 4.0)], support_size=5, feedback_size=5) == []


def test_a_user_with_a_later_rating_is_required():
    with pytest.raises(ValueError, match="at least one user with two or more"):
        TrafficGenerator(url="http://127.0.0.1:9", rows=[])
    with pytest.raises(ValueError, match="at least one user with two or more"):
        TrafficGenerator(url="http://127.0.0.1:9", rows=[(1, 2, 3.0), (2, 2, 3.0)])
    with pytest.raises(ValueError, match="k and feedback_size"):
        TrafficGenerator(url="http://127.0.0.1:9", rows=history(1, 3), k=0)


def test_replay_rows_samples_whole_users_in_time_order(synthetic_home):
    from metarec.features.training_set import load_training_set

    path = synthetic_home.paths.training_sets / "synthetic.parquet"
    rows = replay_rows(path, limit=200, seed=3)
    assert 0 < len(rows) <= 200 and rows == replay_rows(path, limit=200, seed=3)
    assert all(isinstance(u, int) and isinstance(i, int) and 1 <= r <= 5 for u, i, r in rows)
    frame, _ = load_training_set(path)
    frame = frame.sort_values(["user_id", "event_timestamp", "item_id"], kind="stable")
    for user in {u for u, _, _ in rows}:
        history_ = frame[frame["user_id"] == user]
        mine = [(i, r) for u, i, r in rows if u == user]
        pairs = zip(history_.item_id, history_.rating, strict=True)
        assert mine == [(int(i), float(r)) for i, r in pairs]
    assert TrafficGenerator(url="http://127.0.0.1:9", rows=rows).visits
