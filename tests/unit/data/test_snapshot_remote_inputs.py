"""Ingest inputs and the offline root: ``--path``/``--schema`` URIs, publishing, Feast sources."""

import json
import re
import uuid

import fsspec
import pandas as pd
import pytest
import yaml
from feast import Entity, FeatureView, Field, FileSource
from feast.types import Int64
from metarec.config import load_settings
from metarec.data.inputs import local_input, local_schema
from metarec.data.snapshots import SnapshotStore
from metarec.errors import DataSourceNotFoundError


@pytest.fixture
def bucket() -> str:
    return f"memory://inputs-{uuid.uuid4().hex[:8]}"


def test_a_path_or_file_uri_is_read_in_place(tmp_path):
    archive = tmp_path / "ml-100k.zip"
    archive.write_bytes(b"zip")
    assert local_input(archive, download_dir=tmp_path / "dl") == archive
    assert local_input(archive.as_uri(), download_dir=tmp_path / "dl") == archive
    assert local_schema(str(archive), download_dir=tmp_path / "dl") == archive
    assert not (tmp_path / "dl").exists()


def test_an_archive_and_a_folder_on_a_store_are_copied_into_the_downloads(tmp_path, bucket):
    fs = fsspec.filesystem("memory")
    fs.pipe_file(f"{bucket}/ml-100k.zip", b"archive bytes")
    fs.pipe_file(f"{bucket}/ml-100k/u.data", b"1\t1\t5\t0\n")
    fs.pipe_file(f"{bucket}/ml-100k/u.user", b"1|24|M|x|1\n")

    copy = local_input(f"{bucket}/ml-100k.zip", download_dir=tmp_path)
    assert copy.name == "ml-100k.zip" and copy.read_bytes() == b"archive bytes"
    folder = local_input(f"{bucket}/ml-100k", download_dir=tmp_path)
    assert folder.name == "ml-100k"
    assert sorted(p.name for p in folder.iterdir()) == ["u.data", "u.user"]
    assert (folder / "u.data").read_bytes() == b"1\t1\t5\t0\n"


def test_a_missing_uri_names_the_uri(tmp_path, bucket):
    with pytest.raises(DataSourceNotFoundError, match=re.escape(f"{bucket}/nope.zip")):
        local_input(f"{bucket}/nope.zip", download_dir=tmp_path)
    with pytest.raises(DataSourceNotFoundError, match=r"schema\.yaml"):
        local_schema(f"{bucket}/schema.yaml", download_dir=tmp_path)


def test_a_schema_on_a_store_keeps_its_relative_tables_beside_it(tmp_path, bucket):
    schema = {
        "interactions": {"path": "./interactions.parquet", "user_id": "u"},
        "users": {"path": "s3://elsewhere/users.parquet", "key": "u"},
        "items": {"path": "tables/items.csv", "key": "i"},
    }
    fsspec.filesystem("memory").pipe_file(
        f"{bucket}/raw/schema.yaml", yaml.safe_dump(schema).encode()
    )

    local = yaml.safe_load(
        local_schema(f"{bucket}/raw/schema.yaml", download_dir=tmp_path).read_text()
    )

    assert local["interactions"] == {"path": f"{bucket}/raw/interactions.parquet", "user_id": "u"}
    assert local["users"]["path"] == "s3://elsewhere/users.parquet"
    assert local["items"]["path"] == f"{bucket}/raw/tables/items.csv"


def test_ingest_reads_a_schema_uri_and_publishes_to_the_offline_root(tmp_path, bucket):
    from metarec.data.ingest import DataSource
    from metarec.ops.ingestion import ingest

    fs = fsspec.filesystem("memory")
    interactions = pd.DataFrame(
        {"u": [1, 1, 2, 2, 3], "i": [10, 11, 10, 12, 11], "r": [5, 3, 4, 2, 1], "t": range(5)}
    )
    with fs.open(f"{bucket}/raw/interactions.parquet", "wb") as handle:
        interactions.to_parquet(handle)
    schema = {
        "interactions": {
            "path": "interactions.parquet",
            **{"user_id": "u", "item_id": "i", "timestamp": "t"},
            "label": {"kind": "rating", "column": "r", "scale": [1, 5]},
        }
    }
    fs.pipe_file(f"{bucket}/raw/schema.yaml", yaml.safe_dump(schema).encode())
    offline = f"{bucket}/offline"
    settings = load_settings(home=tmp_path / "home", feast={"offline_root": offline})

    first = ingest(settings, source=DataSource.TABLE, schema=f"{bucket}/raw/schema.yaml")
    again = ingest(
        settings, source=DataSource.TABLE, schema=f"{bucket}/raw/schema.yaml", reuse_unchanged=True
    )

    snapshot_id = first.snapshot.snapshot_id
    assert first.counts["interactions"] == 5 and again.reused
    assert fs.cat_file(f"{offline}/CURRENT").decode().strip() == snapshot_id
    manifest = json.loads(fs.cat_file(f"{offline}/{snapshot_id}/manifest.json"))
    assert manifest["row_counts"] == first.snapshot.row_counts
    # Another pod's empty home reuses the published snapshot too.
    other = load_settings(home=tmp_path / "other", feast={"offline_root": offline})
    reused = ingest(
        other, source=DataSource.TABLE, schema=f"{bucket}/raw/schema.yaml", reuse_unchanged=True
    )
    assert reused.reused and reused.snapshot.snapshot_id == snapshot_id
    assert SnapshotStore(other.paths.snapshots).current_id() == snapshot_id


def _view(path: str, **options: str) -> FeatureView:
    source = FileSource(
        name=f"src-{uuid.uuid4().hex[:6]}", path=path, timestamp_field="t", **options
    )
    entity = Entity(name="user", join_keys=["user_id"])
    return FeatureView(
        name="v", entities=[entity], schema=[Field(name="x", dtype=Int64)], source=source
    )


def test_s3_sources_carry_the_pods_endpoint_for_pyarrow():
    from metarec.features.catalog import SnapshotObjects
    from metarec.features.store import s3_endpoint, with_s3_endpoint

    env = {"AWS_ENDPOINT_URL": "http://minio:9000"}
    assert s3_endpoint(env) == "http://minio:9000"
    assert s3_endpoint({**env, "AWS_ENDPOINT_URL_S3": "http://s3:1"}) == "http://s3:1"
    assert s3_endpoint({}) == ""
    s3, local = _view("s3://b/snap/users.parquet"), _view("/home/snap/users.parquet")
    own = _view("s3://b/team.parquet", s3_endpoint_override="http://own:1")
    objects = SnapshotObjects(entities=[], views=[s3, local, own], services=[])

    with_s3_endpoint(objects, "http://minio:9000")

    assert s3.batch_source.file_options.s3_endpoint_override == "http://minio:9000"
    assert not local.batch_source.file_options.s3_endpoint_override
    assert own.batch_source.file_options.s3_endpoint_override == "http://own:1"
