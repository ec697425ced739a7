"""MovieLens goes through the generic table path and its snapshot content is unchanged.

The fingerprints below were computed with the MovieLens reader before it became an instance of the
generic path (its own ``normalise_frames``); the tables, columns, dtypes and values must not move.
"""

from pathlib import Path

import pandas as pd
import pytest
from metarec.data import movielens, movielens_schema
from metarec.data.tables import feature_tables
from metarec.features.fingerprint import dataset_fingerprint

ML100K_ZIP = Path(__file__).resolve().parents[3] / ".." / "shared" / "datasets" / "ml-100k.zip"
FINGERPRINTS = {
    "users": "sha256:6b0242e75200c3fc084ec798917af89e3d71d0412cca2a1175a15ee40431e28b",
    "items": "sha256:bc79e4c5e0f73f3ccb0349159aa93804b6a787db1ebbdbccd1b5d74fb99ce4a5",
    "interactions": "sha256:2c82157d55b508c82d126bb9bc34364dc3cb16232ea209e9d12e9d0daeba0021",
    "user_profile": "sha256:47ed3d3959c7daa15931001e5db0c1e3c5184d7cf4b375e2238dc1da378bb9bf",
    "item_profile": "sha256:7d08ef15fc255769dab041378208704030cfe5b58cf3cdf2d39514449301226c",
    "user_history": "sha256:b298a4cc8c20fbd3e4cb0366659479d6cb796ecc050d4c54c103795a3b5b00ae",
    "user_recent_ratings": "sha256:13550de76bdde599b73614060dc613bfc0cdba4c1e907f0525ff966f15166cbb",  # noqa: E501
    "interaction_label": "sha256:2c82157d55b508c82d126bb9bc34364dc3cb16232ea209e9d12e9d0daeba0021",
}
DTYPES = {
    "users": ["int64", "int64", "string", "string", "string", "string", "datetime64[us, UTC]"],
    "items": ["int64", "string", "Int64", "string", "datetime64[us, UTC]"],
    "interactions": ["int64", "int64", "int64", "int64", "datetime64[ns, UTC]"],
}


@pytest.fixture(scope="module")
def ml100k():
    if not ML100K_ZIP.is_file():
        pytest.skip(f"MovieLens-100K not found at {ML100K_ZIP} (../shared is absent)")
    return movielens.read_ml100k(ML100K_ZIP)


def test_ml100k_snapshot_tables_are_identical_to_the_reader_before_the_generic_path(ml100k):
    tables = feature_tables(ml100k)
    assert {name: dataset_fingerprint(frame) for name, frame in tables.items()} == FINGERPRINTS
    for name, dtypes in DTYPES.items():
        assert [str(dtype) for dtype in tables[name].dtypes] == dtypes, name
    assert list(tables["users"].columns) == list(movielens_schema.USER_COLUMNS)
    assert ml100k.metadata == {}  # the manifest of a MovieLens snapshot is unchanged too


def test_movielens_reading_ends_in_the_generic_normaliser(ml100k, monkeypatch):
    calls = []
    original = movielens_schema.normalise_tables

    def spy(raw, schema):
        calls.append(schema)
        return original(raw, schema)

    monkeypatch.setattr(movielens_schema, "normalise_tables", spy)
    again = movielens.read_ml100k(ML100K_ZIP)
    assert len(calls) == 1 and calls[0].interactions.label.kind == "rating"
    assert calls[0].items.features["genres"].type == "category_list"
    pd.testing.assert_frame_equal(again.interactions, ml100k.interactions)
