"""Model inputs read off the training feature service: Feast types, declared types and tags."""

import pytest
from feast import Entity, FeatureService, Field, FileSource
from feast.feature_view import FeatureView
from feast.types import Array, Bool, Float32, Float64, Int64, String
from metarec.data.table_schema import FeatureType
from metarec.features.declared import DeclaredFeature
from metarec.features.definitions import build_definitions
from metarec.features.model_inputs import (
    ENCODING_TAG,
    Encoding,
    field_input,
    parse_encoding,
    service_inputs,
    type_encoding,
)
from metarec.training.encoding import MOVIELENS_INPUTS


@pytest.mark.parametrize(
    ("dtype", "expected"),
    [
        (String, Encoding.CATEGORICAL),
        (Int64, Encoding.NUMERIC),
        (Float64, Encoding.NUMERIC),
        (Bool, Encoding.NUMERIC),
        (Array(String), Encoding.BAG),
        (Array(Int64), Encoding.BAG),
        (Array(Float32), Encoding.VECTOR),
        (Array(Float64), Encoding.VECTOR),
    ],
)
def test_a_fields_type_chooses_its_encoding(dtype, expected):
    assert type_encoding(Field(name="x", dtype=dtype)) is expected


def test_a_tag_wins_over_the_declared_type_which_wins_over_the_feast_type():
    declared = DeclaredFeature(name="n", owner="users", type=FeatureType.CATEGORY)
    plain = Field(name="n", dtype=Int64)
    assert field_input(plain, view="v", side="user", declared=None).encoding is Encoding.NUMERIC
    as_declared = field_input(plain, view="v", side="user", declared=declared)
    assert as_declared.encoding is Encoding.CATEGORICAL
    tagged = Field(name="n", dtype=Int64, tags={ENCODING_TAG: "bucket:10"})
    found = field_input(tagged, view="v", side="user", declared=declared)
    assert (found.encoding, found.bucket_width) == (Encoding.BUCKET, 10.0)
    skipped = Field(name="n", dtype=Int64, tags={ENCODING_TAG: "skip"})
    assert field_input(skipped, view="v", side="user", declared=None) is None


@pytest.mark.parametrize("text", ["bucket", "bucket:0", "bucket:-2", "embedding"])
def test_bad_encodings_are_refused(text):
    with pytest.raises(ValueError):
        parse_encoding(text)


class _Store:
    """The one store method service_inputs reads: views by name."""

    def __init__(self, views):
        self.views = {view.name: view for view in views}

    def get_feature_view(self, name):
        return self.views[name]


def test_movielens_inputs_are_the_fixed_fields_of_before():
    definitions = build_definitions("/snap")
    views = [
        definitions.interaction_label,
        definitions.user_profile,
        definitions.item_profile,
        definitions.user_history,
    ]
    inputs = service_inputs(_Store(views), definitions.meta_training)
    summary = [(f.name, f.view, f.side, f.encoding.value) for f in inputs]
    assert summary == [
        ("gender", "user_profile", "user", "categorical"),
        ("age_bucket", "user_profile", "user", "categorical"),
        ("occupation", "user_profile", "user", "categorical"),
        ("zip_prefix", "user_profile", "user", "categorical"),
        ("release_year", "item_profile", "item", "bucket"),
        ("genres", "item_profile", "item", "bag"),
    ]
    assert inputs[4].bucket_width == 5 and inputs[5].separator == "|"
    assert tuple(inputs) == MOVIELENS_INPUTS  # the trainer's default for unrecorded inputs


def test_a_teams_view_joins_the_inputs_by_its_entity():
    source = FileSource(path="/snap/items.parquet", timestamp_field="valid_from")
    item = Entity(name="item", join_keys=["item_id"])
    interaction = Entity(name="interaction", join_keys=["interaction_id"])
    extra = FeatureView(
        name="item_text",
        entities=[item],
        schema=[
            Field(name="item_id", dtype=Int64),
            Field(name="text_vec", dtype=Array(Float32)),
            Field(name="brand", dtype=String),
        ],
        source=source,
    )
    label = FeatureView(
        name="labels",
        entities=[interaction],
        schema=[Field(name="interaction_id", dtype=Int64), Field(name="rating", dtype=Int64)],
        source=source,
    )
    service = FeatureService(name="meta_training", features=[label, extra])
    declared = [DeclaredFeature(name="text_vec", owner="extra", type=FeatureType.VECTOR, dim=8)]
    inputs = service_inputs(_Store([label, extra]), service, declared=declared)
    assert [(f.name, f.side, f.encoding.value, f.dim) for f in inputs] == [
        ("text_vec", "item", "vector", 8),
        ("brand", "item", "categorical", None),
    ]
