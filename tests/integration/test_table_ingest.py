"""`metarec data ingest --source table` as a user runs it: bad tables are refused with one line
naming the file, the column and the fix, and the earlier snapshot stays current."""

import importlib.util
from pathlib import Path

import pandas as pd
import pytest
from metarec.cli.main import run
from metarec.data.snapshots import SnapshotStore


def _tables_module():
    """The good tables and their writer, shared with ``tests/unit/data/test_table_source.py``."""
    path = Path(__file__).resolve().parents[1] / "unit" / "data" / "test_table_source.py"
    spec = importlib.util.spec_from_file_location("table_source_tables", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_TABLES = _tables_module()
INTERACTIONS, ITEMS, USERS = _TABLES.INTERACTIONS, _TABLES.ITEMS, _TABLES.USERS
write_tables = _TABLES.write_tables

pytestmark = pytest.mark.integration


def _cli(home: Path, *args: str) -> list[str]:
    return ["--config", str(home / "metarec.yaml"), *args]


@pytest.fixture
def home(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    (home / "metarec.yaml").write_text(f"home: {home}\n")
    monkeypatch.delenv("METAREC_HOME", raising=False)
    good = write_tables(tmp_path / "good")
    assert run(_cli(home, "data", "ingest", "--source", "table", "--schema", str(good))) == 0
    return home


def _broken(tmp_path: Path, table: str, frame: pd.DataFrame) -> Path:
    """The good tables, with ``table`` replaced by ``frame``."""
    schema = write_tables(tmp_path / "bad")
    frame.to_csv(tmp_path / "bad" / f"{table}.csv", index=False)
    return schema


BAD = {
    "missing column": ("interactions", INTERACTIONS.drop(columns="stars"), ["'stars'", "missing"]),
    "non-numeric rating": (
        "interactions",
        INTERACTIONS.assign(stars=["4", "five", "3", "1"]),
        ["'stars', row 2", "'five' is not a number"],
    ),
    "rating outside the scale": (
        "interactions",
        INTERACTIONS.assign(stars=[4, 5, 9, 1]),
        ["'stars', row 3", "outside the declared scale 1 to 5"],
    ),
    "duplicate attribute key": (
        "users",
        pd.concat([USERS, USERS.iloc[[0]]]),
        ["users.csv: column 'id', row 4", "duplicate key"],
    ),
    "duplicate rating row": (
        "interactions",
        pd.concat([INTERACTIONS, INTERACTIONS.iloc[[1]]]),
        ["interactions.csv: column 'uid', row 5", "duplicate key"],
    ),
    "unparseable timestamp": (
        "interactions",
        INTERACTIONS.assign(ts=["2024-05-01", "yesterday", "1714560000", "1714570000"]),
        ["'ts', row 2", "cannot parse timestamp 'yesterday'", "ISO-8601"],
    ),
    "id neither int nor string": (
        "interactions",
        INTERACTIONS.assign(sku=[10.5, 11.0, 10.0, 12.0]),
        ["'sku'", "ids must be integers or strings"],
    ),
    "mistyped feature": (
        "users",
        USERS.assign(age=["31", "forty", "22"]),
        ["users.csv: column 'age', row 2", "not a whole number"],
    ),
    "id types differ between tables": (
        "items",
        ITEMS.assign(sku=["a", "b", "c"]),
        ["items.csv: column 'sku'", "same id type"],
    ),
    "empty table": ("interactions", INTERACTIONS.iloc[:0], ["interactions.csv", "no rows"]),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_table_fails_with_one_line_and_keeps_the_previous_snapshot(
    case, home, tmp_path, capsys
):
    table, frame, expected = BAD[case]
    store = SnapshotStore(home / "data" / "snapshots")
    before = store.current_id()
    schema = _broken(tmp_path, table, frame)
    capsys.readouterr()
    code = run(_cli(home, "data", "ingest", "--source", "table", "--schema", str(schema)))
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code != 0
    assert len(lines) == 1, err
    assert "Traceback" not in err and "Fix:" in lines[0]
    for fragment in expected:
        assert fragment in lines[0], lines[0]
    assert store.current_id() == before
    assert len(store.list()) == 1


def test_help_explains_the_schema(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    assert run(["data", "ingest", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    for word in ("table", "--schema", "kind: rating", "kind: event", "category_list", "vector"):
        assert word in out, word


def test_features_apply_on_a_table_snapshot_registers_the_declared_features(home, capsys):
    from metarec.config import load_settings
    from metarec.features.store import open_store

    assert run(_cli(home, "features", "apply")) == 0
    store = open_store(load_settings(home=home))
    assert "country" in {f.name for f in store.get_feature_view("user_profile").features}
