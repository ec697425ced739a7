import numpy as np
import pytest
from metarec.data.schema import GENRE_SEPARATOR, GENRES, OCCUPATIONS
from metarec.data.synthetic import SyntheticSpec, generate_synthetic

SMALL = SyntheticSpec(
    n_users=80, n_items=120, min_ratings_per_user=20, max_ratings_per_user=40, seed=3
)


def test_same_seed_same_data_other_seed_other_data():
    a, b = generate_synthetic(SMALL), generate_synthetic(SMALL)
    assert a.interactions.equals(b.interactions)
    c = generate_synthetic(SMALL.model_copy(update={"seed": 4}))
    assert not a.interactions.equals(c.interactions)


def test_schema_matches_movielens_vocabularies():
    data = generate_synthetic(SMALL)
    assert set(data.users["occupation"]) <= set(OCCUPATIONS)
    tokens = {g for value in data.items["genres"] for g in value.split(GENRE_SEPARATOR)}
    assert tokens <= set(GENRES)
    assert data.interactions["rating"].between(1, 5).all()
    counts = data.interactions.groupby("user_id").size()
    assert counts.min() >= 20 and counts.max() <= 40
    assert not data.interactions.duplicated(["user_id", "item_id"]).any()


def _genre_taste_gain(ratings, items, rng):
    """MAE gain on held-out halves from each user's per-genre taste (fitted on the other half)."""
    genres = items.set_index("item_id")["genres"].str.split(GENRE_SEPARATOR)
    frame = ratings.assign(
        residual=ratings["rating"] - ratings.groupby("item_id")["rating"].transform("mean")
    )
    frame = frame.assign(half=rng.integers(0, 2, len(frame)), genre=frame["item_id"].map(genres))
    fit, held = frame[frame.half == 0], frame[frame.half == 1]
    taste = fit.explode("genre").groupby(["user_id", "genre"])["residual"].mean()
    exploded = held.explode("genre")
    keys = list(zip(exploded["user_id"], exploded["genre"], strict=True))
    exploded = exploded.assign(taste=taste.reindex(keys).fillna(0.0).to_numpy())
    predicted = exploded.groupby(level=0)["taste"].mean()
    base = held["residual"].abs().mean()
    return base - (held["residual"] - predicted.reindex(held.index)).abs().mean()


def test_ratings_carry_a_per_user_structure():
    """A user's taste learnt from half of their ratings predicts the other half; not so shuffled."""
    data = generate_synthetic(SMALL)
    rng = np.random.default_rng(0)
    gain = _genre_taste_gain(data.interactions, data.items, rng)
    shuffled = data.interactions.assign(
        user_id=rng.permutation(data.interactions["user_id"].to_numpy())
    )
    shuffled_gain = _genre_taste_gain(shuffled, data.items, rng)
    assert gain > 0.1
    assert gain > shuffled_gain + 0.1


def test_invalid_spec_is_rejected():
    with pytest.raises(ValueError):
        SyntheticSpec(n_items=10, max_ratings_per_user=20)
