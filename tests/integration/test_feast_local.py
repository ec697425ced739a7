"""Feast on embedded defaults: SQL registry on SQLite, SQLite online store, file offline store."""

import pandas as pd
import pytest
from metarec.data.schema import STATIC_PROFILE_TIMESTAMP, Dataset, normalise_frames
from metarec.data.snapshots import SnapshotStore
from metarec.features.fingerprint import dataset_fingerprint
from metarec.features.store import apply_features, materialize_features, online_features, open_store
from metarec.features.training_set import build_training_set, load_training_set

pytestmark = pytest.mark.integration

USER_FEATURES = ["age", "age_bucket", "gender", "occupation", "zip_prefix"]


@pytest.mark.slow
def test_ml100k_training_set_has_every_rating_with_features_joined(ml100k_home):
    frame, manifest = load_training_set(ml100k_home.paths.training_sets / "ml-100k.parquet")
    assert len(frame) == 100_000 == manifest.rows
    assert frame["interaction_id"].is_unique
    assert frame[[*USER_FEATURES, "genres", "rating", "rating_count"]].notna().all().all()
    assert manifest.fingerprint == dataset_fingerprint(frame)
    assert manifest.feature_service == "meta_training"
    assert manifest.snapshot_id == SnapshotStore(ml100k_home.paths.snapshots).current_id()


@pytest.mark.slow
def test_ml100k_online_profile_of_user_1(ml100k_home):
    values = online_features(open_store(ml100k_home), user_id=1, item_id=1)
    assert (values["age"], values["age_bucket"], values["gender"], values["occupation"]) == (
        24,
        "18-24",
        "M",
        "technician",
    )
    assert values["title"] == "Toy Story (1995)"
    assert values["rating_count"] == 272  # every rating of user 1 in ml-100k
    assert len(values["recent_item_ids"]) == 20


def test_each_interaction_is_joined_with_the_feature_value_as_of_its_timestamp(settings):
    changed_at = pd.Timestamp("2021-06-01", tz="UTC")
    users = pd.DataFrame(
        {
            "user_id": [1, 1, 2],
            "age": [20, 21, 40],
            "age_bucket": ["18-24", "18-24", "35-44"],
            "gender": ["F", "F", "M"],
            "occupation": ["student", "engineer", "writer"],  # user 1 changes job at changed_at
            "zip_prefix": ["100", "100", "200"],
            "valid_from": [STATIC_PROFILE_TIMESTAMP, changed_at, STATIC_PROFILE_TIMESTAMP],
        }
    )
    items = pd.DataFrame(
        {
            "item_id": [10, 11],
            "title": ["a", "b"],
            "release_year": [1999, 2001],
            "genres": ["Drama", "Comedy|Romance"],
            "valid_from": [STATIC_PROFILE_TIMESTAMP] * 2,
        }
    )
    day = pd.Timedelta(days=1)
    interactions = pd.DataFrame(
        {
            "user_id": [1, 1, 1, 2, 2],
            "item_id": [10, 11, 10, 10, 11],
            "rating": [4, 5, 2, 3, 1],
            "event_timestamp": [
                changed_at - day,
                changed_at - day,
                changed_at + day,
                changed_at - day,
                changed_at + day,
            ],
        }
    )
    from metarec.data.ingest import write_snapshot

    snapshot = write_snapshot(
        Dataset(*normalise_frames(users, items, interactions), source="test"),
        SnapshotStore(settings.paths.snapshots),
    )
    apply_features(settings, snapshot)
    out = settings.paths.training_sets / "pit.parquet"
    build_training_set(settings, out=out)
    frame, _ = load_training_set(out)
    user_1 = frame[frame.user_id == 1].set_index("event_timestamp")
    assert user_1.loc[changed_at - day, "occupation"].tolist() == ["student", "student"]
    assert user_1.loc[changed_at + day, "occupation"] == "engineer"
    assert user_1.loc[changed_at + day, "age"] == 21
    # History as of each timestamp: the two same-day ratings see nothing before them.
    assert user_1.loc[changed_at - day, "rating_count"].tolist() == [0, 0]
    assert user_1.loc[changed_at + day, "rating_count"] == 2
    assert user_1.loc[changed_at + day, "rating_mean"] == 4.5
    assert len(frame) == 5

    materialize_features(settings)
    assert online_features(open_store(settings), user_id=1)["occupation"] == "engineer"
