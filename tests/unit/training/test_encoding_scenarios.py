from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from metarec.training.encoding import FeatureEncoder, bucket_labels
from metarec.training.scenarios import Scenario, TaskSource, parse_support_size, plan_split


def frame(n_users: int = 30, per_user: int = 30, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(1, n_users + 1):
        items = rng.choice(np.arange(1, 101), per_user, replace=False)
        for i in items:
            rows.append(
                {
                    "user_id": u,
                    "item_id": int(i),
                    "rating": int(rng.integers(1, 6)),
                    "gender": "MF"[u % 2],
                    "age_bucket": "25-34",
                    "occupation": ["student", "writer"][u % 2],
                    "zip_prefix": f"{u % 7:03d}",
                    "release_year": 1950 + int(i) // 2,  # items 90+ are the newest
                    "genres": "Comedy|Drama" if i % 2 else "Action",
                }
            )
    df = pd.DataFrame(rows)
    df["release_year"] = df["release_year"].astype("Int64")
    return df


def test_encoder_codes_unknown_values_as_zero_and_round_trips():
    df = frame()
    enc = FeatureEncoder.fit(df, id_rows=df[df.item_id < 50], use_item_id=True)
    x = enc.encode(df)
    assert x.shape == (len(df), enc.width)
    item_col = enc.field_names.index("item_id")
    assert (x[df.item_id.to_numpy() >= 50, item_col] == 0).all()
    assert (x[df.item_id.to_numpy() < 50, item_col] > 0).all()
    rebuilt = FeatureEncoder(**enc.model_dump(mode="json"))
    np.testing.assert_array_equal(rebuilt.encode(df), x)
    other = df.head(3).assign(occupation="astronaut")
    assert (enc.encode(other)[:, enc.field_names.index("occupation")] == 0).all()


def test_genres_encode_as_padded_codes():
    df = frame().head(4)
    enc = FeatureEncoder.fit(df)
    x = enc.encode(df)
    (genres,) = enc.select(kinds=("bag",))
    assert genres.name == "genres" and genres.width == 2
    assert genres.start == len(enc.field_names)  # bags follow the categorical fields
    for row, text in zip(x[:, genres.columns], df.genres, strict=True):
        assert sorted(genres.vocabulary[int(c) - 1] for c in row if c) == sorted(text.split("|"))


def test_release_bucket_handles_missing_years():
    out = bucket_labels(pd.Series([1994, None, 1997], dtype="Int64"), 5)
    assert list(out) == ["1990", "unknown", "1995"]


def test_split_is_seeded_disjoint_and_complete():
    df = frame()
    a, b, c = plan_split(df, seed=1), plan_split(df, seed=1), plan_split(df, seed=2)
    assert a == b and a.test_users != c.test_users
    groups = [set(a.train_users), set(a.val_users), set(a.test_users)]
    assert sum(len(g) for g in groups) == df.user_id.nunique()
    assert (
        not (groups[0] & groups[1]) and not (groups[0] & groups[2]) and not (groups[1] & groups[2])
    )
    new_share = (df.drop_duplicates("item_id").release_year >= a.new_item_cutoff_year).mean()
    assert 0.1 <= new_share <= 0.3


def _source(df, split):
    enc = FeatureEncoder.fit(df)
    return TaskSource(
        x=enc.encode(df),
        y=df.rating.to_numpy(),
        user_ids=df.user_id.to_numpy(),
        item_ids=df.item_id.to_numpy(),
        new_item=split.is_new_item(df),
    )


def test_evaluation_tasks_follow_the_melu_protocol():
    df = frame()
    split = plan_split(df, seed=0)
    src = _source(df, split)
    users = src.eligible_users(Scenario.NEW_USER, split)
    assert users and set(users) <= set(split.test_users)
    five = src.evaluation_tasks(Scenario.NEW_USER, users, support_size=5, seed=0)
    everything = src.evaluation_tasks(Scenario.NEW_USER, users, support_size=None, seed=0)
    for small, full in zip(five, everything, strict=True):
        assert len(small.query_y) == 10 and len(small.support_y) == 5
        np.testing.assert_array_equal(small.query_items, full.query_items)  # same query set
        np.testing.assert_array_equal(small.support_items, full.support_items[:5])  # nested
        assert not set(small.query_items) & set(full.support_items)
    # a user's task does not depend on which other users are evaluated
    alone = src.evaluation_tasks(Scenario.NEW_USER, users[-1:], support_size=5, seed=0)
    np.testing.assert_array_equal(alone[0].support_items, five[-1].support_items)


def test_scenarios_use_the_right_users_and_items():
    df = frame(per_user=60)
    split = plan_split(df, seed=0)
    src = _source(df, split)
    new_items = set(df.item_id[split.is_new_item(df)])
    for scenario in Scenario:
        users = src.eligible_users(scenario, split, min_ratings=11)
        tasks = src.evaluation_tasks(scenario, users, support_size=None, seed=0)
        pool = split.train_users if scenario is Scenario.NEW_ITEM else split.test_users
        assert {t.user_id for t in tasks} <= set(pool)
        for t in tasks:
            items = set(t.query_items) | set(t.support_items)
            assert (
                items <= new_items if scenario is not Scenario.NEW_USER else not items & new_items
            )


def test_parse_support_size():
    assert parse_support_size("all") is None
    assert parse_support_size("10") == 10
    with pytest.raises(ValueError):
        parse_support_size("0")


def test_rare_user_attribute_values_and_items_encode_as_unknown():
    df = frame()
    enc = FeatureEncoder.fit(df, use_item_id=True, min_users=5, min_item_ratings=1000)
    zip_col = enc.field_names.index("zip_prefix")
    per_zip = df.groupby("zip_prefix").user_id.nunique()
    x = enc.encode(df)
    rare = df.zip_prefix.map(per_zip).to_numpy() < 5
    assert rare.any() and (x[rare, zip_col] == 0).all() and (x[~rare, zip_col] > 0).all()
    assert (x[:, enc.field_names.index("item_id")] == 0).all()
