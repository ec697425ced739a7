"""The feature cache reads the fields the served encoder lists, over a real Feast store.

The store holds a generated non-MovieLens catalogue (users with ``country`` and ``age``, items
with a 16-d ``text_embedding``, ratings and integer ids), applied and materialised by Feast
itself (embedded SQLite registry and online store, file offline store). The encoder is not
MovieLens's: a categorical ``country``, a numeric ``age``, the item id and the item vector.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from metarec.config import Settings, load_settings
from metarec.data.catalogue import CatalogueSpec
from metarec.data.catalogue_files import write_catalogue
from metarec.data.ingest import DataSource
from metarec.data.snapshots import SnapshotStore
from metarec.features.store import apply_features, materialize_features
from metarec.ops import ingest
from metarec.serving.features import FeatureCache, compose_rows, user_columns
from metarec.serving.schemas import InputFieldInfo
from metarec.training.encoding import EncodedField, FeatureEncoder

pytestmark = pytest.mark.slow

DIM = 16
SPEC = CatalogueSpec(
    n_users=30,
    n_items=25,
    mean_events_per_user=6.0,
    vector_dim=DIM,
    label="rating",
    ids="int",
    seed=5,
)
AGE_MEAN, AGE_STD = 35.0, 10.0


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, pd.DataFrame, pd.DataFrame]:
    """A home with the catalogue ingested, applied and materialised; its users and items."""
    tmp = tmp_path_factory.mktemp("serving-inputs")
    settings = load_settings(home=tmp / "home")
    ingest(settings, source=DataSource.TABLE, schema=write_catalogue(tmp / "shop", spec=SPEC))
    snapshot = SnapshotStore(settings.paths.snapshots).get()
    apply_features(settings, snapshot)
    materialize_features(settings)
    users = pd.read_parquet(snapshot.table_path("users"))
    items = pd.read_parquet(snapshot.table_path("items"))
    return settings, users, items


def _encoder(users: pd.DataFrame, items: pd.DataFrame) -> FeatureEncoder:
    countries = sorted(users["country"].unique())[1:]  # the first country encodes as unknown
    ids = [str(i) for i in sorted(items["item_id"])]
    return FeatureEncoder(
        fields=[
            EncodedField(
                name="country",
                side="user",
                kind="categorical",
                view="user_profile",
                start=0,
                vocabulary=countries,
            ),
            EncodedField(name="item_id", side="item", kind="categorical", start=1, vocabulary=ids),
            EncodedField(
                name="age",
                side="user",
                kind="numeric",
                view="user_profile",
                start=2,
                mean=AGE_MEAN,
                std=AGE_STD,
            ),
            EncodedField(
                name="text_embedding",
                side="item",
                kind="vector",
                view="item_profile",
                start=3,
                width=DIM,
            ),
        ]
    )


def test_the_cache_reads_and_encodes_the_encoders_fields(shop):
    settings, users, items = shop
    encoder = _encoder(users, items)
    cache = FeatureCache(settings, encoder=encoder)
    assert cache.item_refs == ["item_profile:text_embedding"]
    assert cache.user_refs == [
        "user_profile:country",
        "user_profile:age",
        "user_recent_ratings:recent_item_ids",
        "user_recent_ratings:recent_ratings",
    ]
    assert set(cache.views) == {"user_profile", "item_profile", "user_recent_ratings"}
    assert cache.materialized_at is not None

    matrix = cache.items
    assert matrix.codes.dtype == np.float32 and matrix.codes.shape[1] == 3 + DIM
    assert matrix.item_ids.tolist() == sorted(items["item_id"].astype(int))
    vectors = np.stack(items.set_index("item_id").loc[matrix.item_ids, "text_embedding"])
    np.testing.assert_allclose(matrix.codes[:, 3:], vectors, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(matrix.codes[:, 1], np.arange(1, len(matrix.item_ids) + 1))
    assert not matrix.codes[:, user_columns(encoder)].any()  # user columns empty

    user = users.iloc[0]
    features = cache.user(int(user["user_id"]))
    assert features is not None and features.codes.dtype == np.float32
    vocabulary = encoder.fields[0].vocabulary
    country = vocabulary.index(user["country"]) + 1 if user["country"] in vocabulary else 0
    assert features.codes[0] == country
    assert features.codes[2] == pytest.approx((user["age"] - AGE_MEAN) / AGE_STD)
    assert features.recent_item_ids and set(features.recent_item_ids) <= set(matrix.index)
    assert len(features.recent_ratings) == len(features.recent_item_ids)
    assert cache.user(10_000_000) is None


def test_composed_rows_encode_like_the_joined_features(shop):
    settings, users, items = shop
    encoder = _encoder(users, items)
    cache = FeatureCache(settings, encoder=encoder)
    matrix = cache.items
    assert user_columns(encoder).tolist() == [0, 2]
    for _, user in users.head(5).iterrows():
        features = cache.user(int(user["user_id"]))
        assert features is not None
        joined = items.assign(user_id=user["user_id"], country=user["country"], age=user["age"])
        joined = joined.set_index("item_id").loc[matrix.item_ids].reset_index()
        np.testing.assert_allclose(
            compose_rows(encoder, features.codes, matrix.codes), encoder.encode(joined), atol=1e-6
        )


def test_metadata_lists_the_encoders_input_fields(shop):
    _, users, items = shop
    encoder = _encoder(users, items)
    fields = [InputFieldInfo(**f) for f in encoder.describe()]
    assert [(f.name, f.side, f.kind, f.view, f.width) for f in fields] == [
        ("country", "user", "categorical", "user_profile", 1),
        ("item_id", "item", "categorical", None, 1),
        ("age", "user", "numeric", "user_profile", 1),
        ("text_embedding", "item", "vector", "item_profile", DIM),
    ]
    assert fields[0].vocabulary_size == len(encoder.fields[0].vocabulary)
    assert fields[3].vocabulary_size is None


def test_an_encoder_of_ids_only_reads_the_item_profile_ids(shop):
    settings, _, items = shop
    ids = [str(i) for i in sorted(items["item_id"])]
    encoder = FeatureEncoder(
        fields=[
            EncodedField(name="user_id", side="user", kind="categorical", start=0, vocabulary=[]),
            EncodedField(name="item_id", side="item", kind="categorical", start=1, vocabulary=ids),
        ]
    )
    cache = FeatureCache(settings, encoder=encoder)
    assert cache.item_refs == []
    assert cache.user_refs == [
        "user_recent_ratings:recent_item_ids",
        "user_recent_ratings:recent_ratings",
    ]
    assert cache.items.item_ids.tolist() == sorted(items["item_id"].astype(int))
    assert "item_profile" in cache.views and "user_profile" not in cache.views
