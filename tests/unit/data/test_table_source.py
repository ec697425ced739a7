"""The table source: a team's own CSV/parquet tables, read through their declared schema."""

from pathlib import Path

import pandas as pd
import pytest
from metarec.data.ingest import DataSource, input_identity, read_source, write_snapshot
from metarec.data.snapshots import SnapshotStore
from metarec.data.table_schema import load_table_schema
from metarec.errors import DataFormatError, MetaRecError

INTERACTIONS = pd.DataFrame(
    {
        "uid": ["u1", "u1", "u2", "u3"],
        "sku": [10, 11, 10, 12],
        "ts": ["2024-05-01T12:00:00Z", "2024-05-02T08:30:00+02:00", "1714560000", "1714570000"],
        "stars": [4, 5, 3, 1],
        "event": ["view", "purchase", "click", "view"],
        "w": [1.0, 3.0, 1.5, 1.0],
    }
)
USERS = pd.DataFrame({"id": ["u1", "u2", "u3"], "country": ["FR", "DE", "FR"], "age": [31, 40, 22]})
ITEMS = pd.DataFrame(
    {
        "sku": [10, 11, 12],
        "price": [9.5, 20.0, 3.25],
        "tags": ["a|b", "b", "c|a"],
        "emb": ["0.1,0.2,0.3", "0.0,1.0,0.5", "[1 2 3]"],
    }
)
RATING_LABEL = "  label: {kind: rating, column: stars, scale: [1, 5]}\n"
EVENT_LABEL = (
    "  label: {kind: event, type_column: event, weight_column: w, positive: [click, purchase]}\n"
)


def write_tables(folder: Path, *, suffix: str = "csv", label: str = RATING_LABEL) -> Path:
    """Write the three tables and a schema declaring them; return the schema path."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, frame in (("interactions", INTERACTIONS), ("users", USERS), ("items", ITEMS)):
        path = folder / f"{name}.{suffix}"
        frame.to_csv(path, index=False) if suffix == "csv" else frame.to_parquet(path)
    schema = folder / "schema.yaml"
    schema.write_text(
        f"interactions:\n  path: interactions.{suffix}\n  user_id: uid\n  item_id: sku\n"
        f"  timestamp: ts\n{label}"
        f"users:\n  path: users.{suffix}\n  key: id\n"
        "  features: {country: {type: category}, age: {type: int}}\n"
        f"items:\n  path: {folder / f'items.{suffix}'}\n  key: sku\n"
        "  features:\n    price: {type: float}\n    tags: {type: category_list}\n"
        "    emb: {type: vector, dim: 3}\n"
    )
    return schema


@pytest.mark.parametrize("suffix", ["csv", "parquet"])
def test_rating_tables_become_a_snapshot_with_the_declared_schema(tmp_path, suffix):
    schema = write_tables(tmp_path / "in", suffix=suffix)
    dataset = read_source(DataSource.TABLE, schema=schema, download_dir=tmp_path)
    interactions = dataset.interactions
    assert list(interactions.columns) == [
        "interaction_id",
        "user_id",
        "item_id",
        "rating",
        "event_timestamp",
    ]
    assert str(interactions["user_id"].dtype) == "string"
    assert str(interactions["rating"].dtype) == "int64"
    assert interactions["interaction_id"].tolist() == [1, 2, 3, 4]
    first = interactions.iloc[0]
    assert first["event_timestamp"] == pd.Timestamp("2024-05-01T10:40:00Z")
    assert (first["user_id"], first["item_id"]) == ("u2", 10)  # unix seconds 1714560000 first
    assert list(dataset.users.columns) == ["user_id", "country", "age", "valid_from"]
    assert str(dataset.users["age"].dtype) == "int64"
    items = dataset.items.set_index("item_id")
    assert items.loc[12, "tags"] == "c|a" and items.loc[12, "emb"] == [1.0, 2.0, 3.0]
    assert str(items["price"].dtype) == "float64"

    info = write_snapshot(
        dataset,
        SnapshotStore(tmp_path / "snapshots"),
        input_checksum=input_identity(DataSource.TABLE, schema=schema),
    )
    assert info.source == "table" and info.metadata["label_kind"] == "rating"
    assert info.metadata["input_checksum"].startswith("sha256:")
    assert '"items.emb": "vector"' in info.metadata["declared_features"]
    assert '"users.country": "category"' in info.metadata["declared_features"]
    assert "user_history" in info.row_counts


def test_event_tables_keep_type_weight_and_positive_label(tmp_path):
    schema = write_tables(tmp_path / "in", label=EVENT_LABEL)
    dataset = read_source(DataSource.TABLE, schema=schema, download_dir=tmp_path)
    events = dataset.interactions.set_index(["user_id", "item_id"])
    assert list(dataset.interactions.columns) == [
        "interaction_id",
        "user_id",
        "item_id",
        "event_type",
        "weight",
        "label",
        "event_timestamp",
    ]
    assert events.loc[("u1", 11), "label"] == 1 and events.loc[("u1", 11), "weight"] == 3.0
    assert events.loc[("u1", 10), "label"] == 0  # a view is not positive
    info = write_snapshot(dataset, SnapshotStore(tmp_path / "snapshots"))
    assert info.metadata["label_kind"] == "event"
    assert "rating" not in dataset.interactions and "user_history" not in info.row_counts


def test_without_attribute_tables_the_ids_come_from_the_interactions(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    INTERACTIONS.to_csv(folder / "i.csv", index=False)
    schema = folder / "s.yaml"
    schema.write_text(
        "interactions: {path: i.csv, user_id: uid, item_id: sku, timestamp: ts,\n"
        "  label: {kind: event}}\n"
    )
    dataset = read_source(DataSource.TABLE, schema=schema, download_dir=tmp_path)
    assert dataset.users["user_id"].tolist() == ["u1", "u2", "u3"]
    assert dataset.items["item_id"].tolist() == [10, 11, 12]
    assert dataset.interactions["label"].tolist() == [1, 1, 1, 1]


def test_a_schema_with_an_unknown_key_is_one_line_naming_the_file_and_key(tmp_path):
    schema = tmp_path / "s.yaml"
    schema.write_text("interactions: {path: i.csv, label: {kind: stars}}\n")
    with pytest.raises(DataFormatError, match=r"s\.yaml: key interactions\.label") as error:
        load_table_schema(schema)
    assert "\n" not in str(error.value) and "Fix:" in str(error.value)


def test_csv_categories_stay_text_and_equal_instants_are_one_duplicate(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "i.csv").write_text(
        "u,i,t,r\n1,7,2024-05-01T10:40:00Z,4\n1,7,1714560000,5\n"  # the same instant twice
    )
    (folder / "users.csv").write_text("u,zip\n1,01234\n")
    schema = folder / "s.yaml"
    schema.write_text(
        "interactions: {path: i.csv, user_id: u, item_id: i, timestamp: t,\n"
        "  label: {kind: rating, column: r}}\n"
        "users: {path: users.csv, key: u, features: {zip: {type: category}}}\n"
    )
    with pytest.raises(DataFormatError, match=r"i\.csv: column 'u', row 2: duplicate key"):
        read_source(DataSource.TABLE, schema=schema, download_dir=tmp_path)
    (folder / "i.csv").write_text("u,i,t,r\n1,7,2024-05-01T10:40:00Z,4\n")
    dataset = read_source(DataSource.TABLE, schema=schema, download_dir=tmp_path)
    assert dataset.users["zip"].tolist() == ["01234"]


def test_schema_is_refused_with_another_source_and_required_with_table(tmp_path):
    with pytest.raises(MetaRecError, match="--schema is for --source table"):
        read_source(DataSource.SYNTHETIC, schema=tmp_path / "s.yaml", download_dir=tmp_path)
    with pytest.raises(MetaRecError, match="needs --schema"):
        read_source(DataSource.TABLE, download_dir=tmp_path)


def test_a_movielens_rating_outside_1_to_5_is_refused_naming_the_archive_member(make_ml100k):
    from metarec.data.movielens import read_ml100k

    archive = make_ml100k(u_data="1\t1\t5\t874965758\n1\t2\t6\t876893171\n")
    with pytest.raises(DataFormatError, match=r"ml-100k/u\.data: column 'rating', row 2"):
        read_ml100k(archive)


def test_tables_behind_an_fsspec_uri_and_a_declared_interaction_key(tmp_path):
    import fsspec

    fs = fsspec.filesystem("memory")
    with fs.open("/team/interactions.parquet", "wb") as handle:
        INTERACTIONS.assign(key=[40, 30, 20, 10]).to_parquet(handle)
    schema = tmp_path / "s.yaml"
    schema.write_text(
        "interactions: {path: 'memory://team/interactions.parquet', user_id: uid, item_id: sku,\n"
        "  timestamp: ts, interaction_id: key, label: {kind: event, type_column: event}}\n"
    )
    try:
        dataset = read_source(DataSource.TABLE, schema=schema, download_dir=tmp_path)
        assert input_identity(DataSource.TABLE, schema=schema).startswith("sha256:")
    finally:
        fs.rm("/team", recursive=True)
    assert dataset.interactions["interaction_id"].tolist() == [40, 30, 20, 10]
    assert dataset.interactions["event_type"].tolist() == ["view", "purchase", "click", "view"]
