"""Declared feature types → Feast types, and the `user_features.py` hook's checks."""

from pathlib import Path

import pytest
from feast import Entity, Field
from feast.types import Array, Float32, Float64, Int64, String
from metarec.data.table_schema import FeatureType
from metarec.errors import FeatureStoreError
from metarec.features.declared import FEAST_TYPES, DeclaredFeature, feature_from_field
from metarec.features.extensions import SnapshotContext, load_extensions


def test_each_declared_type_maps_to_the_feast_type_of_what_the_snapshot_stores():
    expected = {
        FeatureType.CATEGORY: String,
        FeatureType.INT: Int64,
        FeatureType.FLOAT: Float64,
        FeatureType.CATEGORY_LIST: String,
        FeatureType.VECTOR: Array(Float64),
    }
    assert expected == FEAST_TYPES
    field = DeclaredFeature(name="emb", owner="items", type=FeatureType.VECTOR, dim=4).field()
    assert (field.name, field.dtype) == ("emb", Array(Float64))


def test_a_teams_fields_are_checked_from_their_feast_type():
    assert feature_from_field(Field(name="x", dtype=Array(Float32))).type is FeatureType.VECTOR
    assert feature_from_field(Field(name="x", dtype=String)).type is FeatureType.CATEGORY
    assert feature_from_field(Field(name="x", dtype=Array(String))) is None


def _context(root: str = "/snap") -> SnapshotContext:
    entity = Entity(name="item", join_keys=["item_id"])
    return SnapshotContext(user=entity, item=entity, interaction=entity, source_root=root)


def test_sources_point_at_the_snapshot_tables_with_their_timestamp_fields():
    items = _context().source("items")
    assert (items.path, items.timestamp_field) == ("/snap/items.parquet", "valid_from")
    assert _context().source("user_profile").timestamp_field == "event_timestamp"


def test_no_hook_file_means_no_extensions(tmp_path: Path):
    assert load_extensions(tmp_path, _context()).views == []


@pytest.mark.parametrize(
    ("code", "problem"),
    [
        ("x = 1\n", "defines no feature_views"),
        ("def feature_views(c):\n    return [1]\n", "must return a list of Feast FeatureViews"),
        ("ONLINE_VIEWS = 'v'\ndef feature_views(c):\n    return []\n", "must be a list"),
        ("import no_such_module\n", "failed to import"),
    ],
)
def test_a_broken_hook_is_refused_naming_the_file(tmp_path: Path, code: str, problem: str):
    (tmp_path / "user_features.py").write_text(code)
    with pytest.raises(FeatureStoreError, match=problem) as caught:
        load_extensions(tmp_path, _context())
    assert "user_features.py" in str(caught.value)
