import pandas as pd
import pytest
from metarec.data.snapshots import SnapshotStore
from metarec.errors import ChecksumMismatchError, SnapshotNotFoundError


def test_write_makes_a_new_current_snapshot(tmp_path):
    store = SnapshotStore(tmp_path)
    first = store.write({"t": pd.DataFrame({"a": [1, 2]})}, source="one")
    second = store.write({"t": pd.DataFrame({"a": [3]})}, source="two")
    assert store.current_id() == second.snapshot_id
    assert [s.snapshot_id for s in store.list()] == [first.snapshot_id, second.snapshot_id]
    assert store.read_table("t")["a"].tolist() == [3]
    assert store.read_table("t", snapshot_id=first.snapshot_id)["a"].tolist() == [1, 2]


def test_failed_write_leaves_previous_snapshot_current_and_readable(tmp_path):
    store = SnapshotStore(tmp_path)
    good = store.write({"t": pd.DataFrame({"a": [1]})}, source="good")
    unwritable = pd.DataFrame({"a": [object()]})  # parquet cannot store arbitrary objects
    with pytest.raises(Exception):  # noqa: B017 - any failure must leave the store intact
        store.write({"t": pd.DataFrame({"a": [2]}), "bad": unwritable}, source="bad")
    assert store.current_id() == good.snapshot_id
    assert store.read_table("t")["a"].tolist() == [1]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp")] == []


def test_no_snapshot_yet_says_how_to_ingest(tmp_path):
    with pytest.raises(SnapshotNotFoundError, match="metarec data ingest"):
        SnapshotStore(tmp_path).current_id()


def test_changed_table_is_detected(tmp_path):
    store = SnapshotStore(tmp_path)
    info = store.write({"t": pd.DataFrame({"a": [1, 2, 3]})}, source="x")
    pd.DataFrame({"a": [9]}).to_parquet(info.table_path("t"))
    with pytest.raises(ChecksumMismatchError):
        store.read_table("t")
