import pytest
from metarec.errors import ReferenceProfileNotFoundError
from metarec.validation.profile import ProfileStore, compute_statistics

from .conftest import make_profile, make_training_set


def test_statistics_of_a_training_set(clean):
    stats = compute_statistics(clean, quantiles=(0.1, 0.5, 0.9))
    assert stats.row_count == len(clean)
    assert stats.user_count == clean["user_id"].nunique()
    assert stats.mean_rating == pytest.approx(clean["rating"].mean())
    assert sum(stats.rating_shares.values()) == pytest.approx(1.0)
    assert set(stats.rating_shares) == {1, 2, 3, 4, 5}
    # every user rated every item once
    assert stats.ratings_per_user_quantiles == {0.1: 12.0, 0.5: 12.0, 0.9: 12.0}


def test_store_without_profiles_says_how_to_build_one(tmp_path):
    store = ProfileStore(tmp_path / "profiles")
    assert store.versions("meta_training") == []
    with pytest.raises(ReferenceProfileNotFoundError, match="metarec features profile"):
        store.current("meta_training")


def test_profiles_are_versioned_and_never_overwritten(tmp_path):
    store = ProfileStore(tmp_path / "profiles")
    first = make_profile(make_training_set(seed=1), version=store.next_version("meta_training"))
    path = store.add(first)
    assert path.name == "v0001.json"
    second = make_profile(make_training_set(seed=2), version=store.next_version("meta_training"))
    store.add(second)
    assert store.versions("meta_training") == [1, 2]
    assert store.current("meta_training") == second
    assert store.get("meta_training", 1) == first

    before = path.read_bytes()
    with pytest.raises(FileExistsError):
        store.add(make_profile(make_training_set(seed=3), version=1))
    assert path.read_bytes() == before
    assert not list(store.folder("meta_training").glob(".*"))  # no temporary files left


def test_profile_round_trips_through_json(tmp_path):
    store = ProfileStore(tmp_path)
    profile = make_profile(make_training_set())
    store.add(profile)
    loaded = store.current("meta_training")
    assert loaded.statistics.rating_shares == profile.statistics.rating_shares
    assert loaded.statistics.ratings_per_user_quantiles == (
        profile.statistics.ratings_per_user_quantiles
    )
    assert loaded.label == "meta_training@v1"
