import pandas as pd
from metarec.data.schema import STATIC_PROFILE_TIMESTAMP, Dataset, normalise_frames
from metarec.data.tables import feature_tables, user_history_table, user_recent_ratings_table


def _dataset():
    t = pd.Timestamp("2020-01-01", tz="UTC")
    users = pd.DataFrame(
        {
            "user_id": [1],
            "age": [30],
            "age_bucket": ["25-34"],
            "gender": ["F"],
            "occupation": ["writer"],
            "zip_prefix": ["123"],
            "valid_from": [STATIC_PROFILE_TIMESTAMP],
        }
    )
    items = pd.DataFrame(
        {
            "item_id": [1, 2, 3],
            "title": ["a", "b", "c"],
            "release_year": [1990, 1991, None],
            "genres": ["Drama", "Comedy", "unknown"],
            "valid_from": [STATIC_PROFILE_TIMESTAMP] * 3,
        }
    )
    interactions = pd.DataFrame(
        {
            "user_id": [1, 1, 1],
            "item_id": [1, 2, 3],
            "rating": [4, 2, 5],
            "event_timestamp": [t, t, t + pd.Timedelta(hours=1)],  # two ratings in the same second
        }
    )
    return Dataset(*normalise_frames(users, items, interactions), source="test"), t


def test_history_at_t_summarises_only_ratings_strictly_before_t():
    dataset, t = _dataset()
    history = user_history_table(dataset).set_index("event_timestamp")
    assert history.loc[t, "rating_count"] == 0
    later = history.loc[t + pd.Timedelta(hours=1)]
    assert later["rating_count"] == 2 and later["rating_mean"] == 3.0 and later["rating_std"] == 1.0
    final = history.iloc[-1]  # one second after the last rating: the complete history
    assert final.name == t + pd.Timedelta(hours=1, seconds=1)
    assert final["rating_count"] == 3


def test_recent_ratings_are_newest_first_and_exclude_the_current_event():
    dataset, t = _dataset()
    recent = user_recent_ratings_table(dataset, keep=2).set_index("event_timestamp")
    assert recent.loc[t, "recent_item_ids"] == []
    assert recent.iloc[-1]["recent_item_ids"] == [3, 2]
    assert recent.iloc[-1]["recent_ratings"] == [5, 2]


def test_every_snapshot_table_is_produced():
    dataset, _ = _dataset()
    tables = feature_tables(dataset)
    assert set(tables) == {
        "users",
        "items",
        "interactions",
        "user_profile",
        "item_profile",
        "user_history",
        "user_recent_ratings",
        "interaction_label",
    }
    assert "event_timestamp" in tables["user_profile"].columns
