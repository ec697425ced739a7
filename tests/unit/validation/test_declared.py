"""Checks derived from each declared feature's type, on a small in-memory table."""

from datetime import datetime

import numpy as np
import pandas as pd
import pytest
from metarec.data.table_schema import FeatureType
from metarec.features.declared import DeclaredFeature
from metarec.features.training_set import TrainingSetManifest
from metarec.validation.declared import feature_expectations, suite_for, vector_lengths
from metarec.validation.profile import compute_statistics
from metarec.validation.runner import run_suite

from .conftest import NOW, make_profile

FEATURES = [
    DeclaredFeature(name="country", owner="users", type=FeatureType.CATEGORY),
    DeclaredFeature(name="age", owner="users", type=FeatureType.INT, nullable=True),
    DeclaredFeature(name="price", owner="items", type=FeatureType.FLOAT),
    DeclaredFeature(name="emb", owner="items", type=FeatureType.VECTOR, dim=3),
]


def _frame(n: int = 40) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "interaction_id": np.arange(1, n + 1, dtype="int64"),
            "user_id": pd.array([f"u{i % 8}" for i in range(n)], dtype="string"),
            "item_id": pd.array([f"i{i % 5}" for i in range(n)], dtype="string"),
            "event_timestamp": pd.Timestamp("2024-01-01", tz="UTC")
            + pd.to_timedelta(np.arange(n), unit="h"),
            "label": np.ones(n, dtype="int64"),
            "country": pd.array(np.where(np.arange(n) % 2, "de", "fr"), dtype="string"),
            "age": pd.array(20 + np.arange(n) % 30, dtype="Int64"),
            "price": rng.uniform(5, 50, size=n),
            "emb": [list(rng.normal(size=3)) for _ in range(n)],
        }
    )


def _manifest() -> TrainingSetManifest:
    return TrainingSetManifest(
        path="memory",
        fingerprint="sha256:x",
        rows=40,
        columns=[],
        feature_service="meta_training",
        feature_service_version="v",
        snapshot_id="snap",
        feast_project="p",
        created_at=datetime(2025, 1, 1),
        declared_features=FEATURES,
        table_snapshot=True,
    )


def test_each_type_gets_its_expectations_named_after_the_feature():
    names = {f.name: [spec.key for spec in feature_expectations(f)] for f in FEATURES}
    assert names == {
        "country": ["country_not_null", "country_in_reference_categories"],
        "age": ["age_in_reference_range"],  # nullable: no null check
        "price": ["price_not_null", "price_in_reference_range"],
        "emb": ["emb_not_null", "emb_dimension"],
    }


def test_table_suite_adds_the_feature_expectations():
    suite = suite_for(_manifest())
    keys = {spec.key for spec in suite.expectations}
    assert suite.name == "table_meta_training"
    assert {"not_empty", "no_future_events", "country_not_null", "emb_dimension"} <= keys
    assert "rating_in_range" not in keys


def test_profile_records_ranges_categories_and_dimensions_without_ratings():
    stats = compute_statistics(_frame(), quantiles=(0.5,), features=FEATURES).features
    assert stats["country"].categories == ["de", "fr"]
    assert stats["age"].min == 20 and stats["age"].max == 49
    assert stats["emb"].dim == 3


def test_vector_lengths_keep_missing_vectors_missing():
    lengths = vector_lengths(pd.DataFrame({"emb": [[1.0, 2.0], None]}), ["emb"])
    assert lengths["emb"].tolist() == [2, pd.NA]


def _failed(frame: pd.DataFrame) -> set[str]:
    suite = suite_for(_manifest())
    profile = make_profile(_frame(), suite=suite, features=FEATURES)
    outcomes = run_suite(frame, suite, now=NOW, profile=profile)
    return {item.name for item in outcomes if not item.success}


def test_the_clean_table_passes():
    assert _failed(_frame()) == set()


@pytest.mark.parametrize(
    ("change", "failing"),
    [
        (lambda f: f.assign(country=f["country"].mask(f.index == 3)), "country_not_null"),
        (lambda f: f.assign(country="xx"), "country_in_reference_categories"),
        (lambda f: f.assign(price=f["price"] + 1000), "price_in_reference_range"),
        (lambda f: f.assign(emb=f["emb"].map(lambda v: [*v, 0.0])), "emb_dimension"),
    ],
)
def test_a_corrupted_feature_fails_by_name(change, failing):
    assert _failed(change(_frame())) == {failing}
