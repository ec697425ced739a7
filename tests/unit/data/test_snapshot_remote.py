"""Snapshots published to and fetched from an offline root (fsspec's in-memory store here)."""

import json
import uuid

import fsspec
import pandas as pd
import pytest
from metarec.data.snapshot_remote import RemoteSnapshots, remote_snapshots, resolve_snapshot
from metarec.data.snapshots import SnapshotStore
from metarec.errors import ChecksumMismatchError, SnapshotNotFoundError


@pytest.fixture
def root() -> str:
    """A fresh prefix of the in-memory file system (an object store without a server)."""
    return f"memory://offline-{uuid.uuid4().hex[:8]}/snapshots"


def _write(store: SnapshotStore, values: list[int], source: str = "s"):
    return store.write(
        {"interactions": pd.DataFrame({"a": values}), "users": pd.DataFrame({"u": [1]})},
        source=source,
    )


def test_publish_uploads_tables_manifest_and_current(tmp_path, root):
    info = _write(SnapshotStore(tmp_path / "ingest"), [1, 2, 3])
    url = RemoteSnapshots(root).publish(info)

    fs = fsspec.filesystem("memory")
    assert url == f"{root}/{info.snapshot_id}"
    assert fs.cat_file(f"{root}/CURRENT").decode().strip() == info.snapshot_id
    assert sorted(p.rpartition("/")[2] for p in fs.ls(url, detail=False)) == [
        "interactions.parquet",
        "manifest.json",
        "users.parquet",
    ]
    manifest = json.loads(fs.cat_file(f"{url}/manifest.json"))
    assert manifest["file_sha256"] == info.file_sha256


def test_a_pod_with_an_empty_home_fetches_the_current_snapshot(tmp_path, root):
    remote = RemoteSnapshots(root)
    remote.publish(_write(SnapshotStore(tmp_path / "ingest"), [1]))
    newer = _write(SnapshotStore(tmp_path / "ingest"), [4, 5])
    remote.publish(newer)

    home = SnapshotStore(tmp_path / "pod")
    got = resolve_snapshot(home, remote)

    assert got.snapshot_id == newer.snapshot_id
    assert got.path == tmp_path / "pod" / newer.snapshot_id
    assert home.current_id() == newer.snapshot_id
    assert home.read_table("interactions")["a"].tolist() == [4, 5]


def test_the_offline_roots_current_wins_over_an_older_local_one(tmp_path, root):
    local = SnapshotStore(tmp_path / "pod")
    old = _write(local, [1])
    newer = _write(SnapshotStore(tmp_path / "ingest"), [2])
    RemoteSnapshots(root).publish(newer)

    assert resolve_snapshot(local, remote_snapshots(root)).snapshot_id == newer.snapshot_id
    assert local.current_id() == newer.snapshot_id
    # Asked by id (say, the applied one), an older snapshot is returned, not made current.
    assert resolve_snapshot(local, remote_snapshots(root), old.snapshot_id) == local.get(
        old.snapshot_id
    )
    assert local.current_id() == newer.snapshot_id


def test_without_an_offline_root_the_home_is_the_only_store(tmp_path):
    assert remote_snapshots("") is None
    with pytest.raises(SnapshotNotFoundError, match="metarec data ingest"):
        resolve_snapshot(SnapshotStore(tmp_path), None)


def test_a_snapshot_without_its_manifest_on_the_store_is_incomplete(tmp_path, root):
    info = _write(SnapshotStore(tmp_path / "ingest"), [1])
    RemoteSnapshots(root).publish(info)
    fsspec.filesystem("memory").rm_file(f"{root}/{info.snapshot_id}/manifest.json")

    home = SnapshotStore(tmp_path / "pod")
    with pytest.raises(SnapshotNotFoundError, match=r"no manifest\.json"):
        resolve_snapshot(home, RemoteSnapshots(root))
    assert home.list() == []


def test_nothing_published_says_how_to_ingest(tmp_path, root):
    with pytest.raises(SnapshotNotFoundError, match="metarec data ingest"):
        resolve_snapshot(SnapshotStore(tmp_path), RemoteSnapshots(root))


def test_a_corrupt_copy_on_the_store_is_refused_and_leaves_nothing(tmp_path, root):
    info = _write(SnapshotStore(tmp_path / "ingest"), [1, 2])
    RemoteSnapshots(root).publish(info)
    fs = fsspec.filesystem("memory")
    with fs.open(f"{root}/{info.snapshot_id}/interactions.parquet", "wb") as handle:
        pd.DataFrame({"a": [9]}).to_parquet(handle)

    home = tmp_path / "pod"
    with pytest.raises(ChecksumMismatchError, match=r"interactions\.parquet"):
        RemoteSnapshots(root).fetch(info.snapshot_id, SnapshotStore(home))
    assert [p.name for p in home.iterdir()] == []


def test_a_snapshot_already_in_the_home_is_not_fetched_again(tmp_path, root):
    store = SnapshotStore(tmp_path / "home")
    info = _write(store, [1, 2])
    RemoteSnapshots(root).publish(info)
    fsspec.filesystem("memory").rm_file(f"{root}/{info.snapshot_id}/interactions.parquet")

    assert resolve_snapshot(store, RemoteSnapshots(root)) == info
    assert store.read_table("interactions")["a"].tolist() == [1, 2]


def test_publishing_a_complete_snapshot_again_only_moves_current(tmp_path, root):
    store = SnapshotStore(tmp_path / "home")
    first, second = _write(store, [1]), _write(store, [2])
    remote = RemoteSnapshots(root)
    remote.publish(first)
    remote.publish(second)
    remote.publish(first)
    assert remote.current_id() == first.snapshot_id
    assert remote.manifest(second.snapshot_id)["row_counts"]["interactions"] == 1
