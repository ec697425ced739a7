"""`ingest`: a dataset into a new current snapshot; pipelines reuse an unchanged input's one."""

import importlib.util
from pathlib import Path

import pytest
from metarec.config import load_settings
from metarec.data.ingest import DataSource
from metarec.data.snapshots import SnapshotStore
from metarec.data.synthetic import SyntheticSpec
from metarec.errors import DataFormatError
from metarec.ops import ingest

SMALL = {"n_users": 30, "n_items": 40, "max_ratings_per_user": 25, "min_ratings_per_user": 20}


def _table_fixtures():
    path = Path(__file__).resolve().parents[1] / "data" / "test_table_source.py"
    spec = importlib.util.spec_from_file_location("table_source_fixtures", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def settings(tmp_path: Path):
    return load_settings(home=tmp_path / "home")


def test_a_new_snapshot_becomes_current_with_its_counts(settings):
    result = ingest(settings, source=DataSource.SYNTHETIC, synthetic=SyntheticSpec(**SMALL))
    assert not result.reused
    assert SnapshotStore(settings.paths.snapshots).current_id() == result.snapshot.snapshot_id
    assert result.counts["users"] == 30
    assert result.counts["items"] == 40
    assert result.counts["interactions"] >= 30 * 20
    assert result.label_kind == "rating"


def test_reuse_unchanged_returns_the_current_snapshot_for_the_same_input(settings):
    spec = SyntheticSpec(**SMALL)
    first = ingest(settings, source=DataSource.SYNTHETIC, synthetic=spec, reuse_unchanged=True)
    again = ingest(settings, source=DataSource.SYNTHETIC, synthetic=spec, reuse_unchanged=True)
    assert again.reused
    assert again.snapshot.snapshot_id == first.snapshot.snapshot_id
    other = SyntheticSpec(**{**SMALL, "seed": 7})
    changed = ingest(settings, source=DataSource.SYNTHETIC, synthetic=other, reuse_unchanged=True)
    assert not changed.reused
    assert changed.snapshot.snapshot_id != first.snapshot.snapshot_id
    without_reuse = ingest(settings, source=DataSource.SYNTHETIC, synthetic=other)
    assert not without_reuse.reused


def test_event_tables_are_ingested_and_bad_ones_leave_the_current_snapshot(settings, tmp_path):
    fixtures = _table_fixtures()
    schema = fixtures.write_tables(tmp_path / "events", label=fixtures.EVENT_LABEL)
    good = ingest(settings, source=DataSource.TABLE, schema=schema)
    assert good.label_kind == "event"
    broken = tmp_path / "events" / "interactions.csv"
    broken.write_text(broken.read_text().replace("\n", "\nnot-a-row\n", 1))
    with pytest.raises(DataFormatError):
        ingest(settings, source=DataSource.TABLE, schema=schema)
    assert SnapshotStore(settings.paths.snapshots).current_id() == good.snapshot.snapshot_id
