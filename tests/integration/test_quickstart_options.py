"""`metarec quickstart` refuses options that do not fit its source, in one line, before any work."""

from __future__ import annotations

import pytest
from metarec.cli.main import run

pytestmark = pytest.mark.integration


@pytest.fixture
def home(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("METAREC_HOME", str(home))
    return home


@pytest.mark.parametrize(
    ("options", "problem", "fix"),
    [
        (
            ["--source", "table"],
            "--source table needs --schema",
            "`metarec data generate --out my-data --label rating --ids int`, then "
            "`metarec quickstart --source table --schema my-data/schema.yaml`",
        ),
        (
            ["--source", "synthetic", "--schema", "schema.yaml"],
            "--schema is for --source table, not synthetic.",
            "drop --schema, or pass --source table.",
        ),
        (
            ["--source", "table", "--schema", "schema.yaml", "--path", "ml-100k.zip"],
            "--path is for MovieLens sources",
            "drop --path, and name the files in the schema YAML.",
        ),
    ],
)
def test_a_source_option_that_does_not_fit_is_one_line_before_any_work(
    home, capsys, options, problem, fix
):
    assert run(["quickstart", *options]) == 1
    captured = capsys.readouterr()
    error = captured.err.strip()
    assert error.startswith("error: ") and "\n" not in error
    stated, _, fix_text = error.partition(" Fix: ")
    assert problem in stated and fix in fix_text
    assert "MetaRec quickstart" not in captured.out  # nothing started
    assert not home.exists()  # nothing written
