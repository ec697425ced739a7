"""The service's feature cache against a real Feast store: items, users, refresh."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from metarec.config import load_settings
from metarec.features.store import materialize_features
from metarec.features.training_set import load_training_set
from metarec.serving.features import FeatureCache, compose_rows
from metarec.training.encoding import FeatureEncoder

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def home(synthetic_home, tmp_path):
    shutil.copytree(synthetic_home.paths.home, tmp_path / "home")
    return load_settings(home=tmp_path / "home", registry={"export_bentoml": False})


def test_cache_matches_the_training_encoding_and_refreshes_on_materialisation(home):
    df, _ = load_training_set(home.paths.training_sets / "synthetic.parquet")
    encoder = FeatureEncoder.fit(df, use_user_id=False, use_item_id=True)
    cache = FeatureCache(home, encoder=encoder)
    items = cache.items
    assert set(df["item_id"].astype(int)) <= set(items.item_ids.tolist())
    assert cache.materialized_at is not None

    # A user's online features composed with cached items encode like the training set rows.
    row = df.sort_values("event_timestamp").iloc[-1]
    user = cache.user(int(row["user_id"]))
    assert user is not None and len(user.recent_item_ids) > 0
    composed = compose_rows(encoder, user.codes, items.codes[[items.index[int(row["item_id"])]]])
    np.testing.assert_array_equal(composed[0], encoder.encode(df.loc[[row.name]])[0])
    assert cache.user(10_000_000) is None
    assert cache.cached_user(10_000_000) == (True, None)

    assert cache.refresh() is False  # nothing changed
    materialize_features(home, end=datetime.now(UTC) + timedelta(seconds=5))
    assert cache.refresh() is True  # a new materialisation interval: items reloaded
    assert cache.items is not items
    assert cache.cached_user(int(row["user_id"])) == (False, None)  # users forgotten
