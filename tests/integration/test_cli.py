"""The `metarec` CLI as a user runs it: commands, outputs, and one-line errors on bad input."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from metarec.cli.main import run
from metarec.data.snapshots import SnapshotStore

pytestmark = pytest.mark.integration

GOOD_DATA = "1\t1\t5\t874965758\n1\t2\t3\t876893171\n2\t1\t4\t878542960\n"
U_USER = "1|24|M|technician|85711\n2|53|F|other|94043\n"
U_ITEM = (
    "1|Toy Story (1995)|01-Jan-1995||http://x|0|0|0|1|1|1|0|0|0|0|0|0|0|0|0|0|0|0|0\n"
    "2|GoldenEye (1995)|01-Jan-1995||http://x|0|1|1|0|0|0|0|0|0|0|0|0|0|0|0|0|1|0|0\n"
)


def _zip(path: Path, files: dict[str, str]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, text in files.items():
            archive.writestr(f"ml-100k/{name}", text)
    return path


def _cli(home: Path, *args: str) -> list[str]:
    return ["--config", str(home / "metarec.yaml"), *args]


@pytest.fixture
def home(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    (home / "metarec.yaml").write_text(f"home: {home}\n")
    monkeypatch.delenv("METAREC_HOME", raising=False)
    good = _zip(tmp_path / "good.zip", {"u.data": GOOD_DATA, "u.user": U_USER, "u.item": U_ITEM})
    assert run(_cli(home, "data", "ingest", "--source", "ml-100k", "--path", str(good))) == 0
    return home


def _bad_inputs(tmp_path: Path) -> dict[str, tuple[list[str], list[str]]]:
    truncated = tmp_path / "truncated.zip"
    full = _zip(
        tmp_path / "full.zip", {"u.data": GOOD_DATA * 50, "u.user": U_USER, "u.item": U_ITEM}
    )
    truncated.write_bytes(full.read_bytes()[:300])
    return {
        "truncated zip": (
            ["--source", "ml-100k", "--path", str(truncated)],
            ["truncated.zip", "truncated or corrupted"],
        ),
        "non-numeric rating": (
            [
                "--source",
                "ml-100k",
                "--path",
                str(
                    _zip(
                        tmp_path / "nan.zip",
                        {
                            "u.data": GOOD_DATA + "2\t2\tabc\t878542960\n",
                            "u.user": U_USER,
                            "u.item": U_ITEM,
                        },
                    )
                ),
            ],
            ["u.data, line 4", "rating 'abc'"],
        ),
        "missing u.user": (
            [
                "--source",
                "ml-100k",
                "--path",
                str(_zip(tmp_path / "nouser.zip", {"u.data": GOOD_DATA, "u.item": U_ITEM})),
            ],
            ["nouser.zip: u.user", "not found"],
        ),
        "wrong separator": (
            [
                "--source",
                "ml-100k",
                "--path",
                str(
                    _zip(
                        tmp_path / "sep.zip",
                        {
                            "u.data": GOOD_DATA.replace("\t", ","),
                            "u.user": U_USER,
                            "u.item": U_ITEM,
                        },
                    )
                ),
            ],
            ["u.data, line 1", "','-separated"],
        ),
        "unknown source": (["--source", "ml-10k", "--path", str(full)], ["--source", "ml-10k"]),
    }


@pytest.mark.parametrize(
    "case",
    ["truncated zip", "non-numeric rating", "missing u.user", "wrong separator", "unknown source"],
)
def test_bad_input_fails_with_one_clear_line_and_keeps_the_previous_snapshot(
    case, home, tmp_path, capsys
):
    store = SnapshotStore(home / "data" / "snapshots")
    before = store.current_id()
    capsys.readouterr()
    args, expected = _bad_inputs(tmp_path)[case]
    code = run(_cli(home, "data", "ingest", *args))
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code != 0
    assert len(lines) == 1, err
    assert "Traceback" not in err and "Fix:" in lines[0]
    for fragment in expected:
        assert fragment in lines[0]
    assert store.current_id() == before
    assert len(store.read_table("interactions")) == 3


def test_console_script_prints_no_traceback(home, tmp_path):
    bad = _zip(tmp_path / "nan.zip", {"u.data": "1\t1\tx\t1\n", "u.user": U_USER, "u.item": U_ITEM})
    metarec = Path(sys.executable).parent / "metarec"
    result = subprocess.run(
        [str(metarec), *_cli(home, "data", "ingest", "--source", "ml-100k", "--path", str(bad))],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "u.data, line 1: rating 'x' is not an integer." in result.stderr


def test_help_explains_every_command(capsys):
    for command in (
        ["--help"],
        ["data", "ingest", "--help"],
        ["features", "apply", "--help"],
        ["features", "materialize", "--help"],
        ["features", "show", "--help"],
        ["features", "training-set", "--help"],
        ["quickstart", "--help"],
        ["retrain", "--help"],
    ):
        assert run(command) == 0
        assert "Usage" in capsys.readouterr().out


def test_retrain_with_an_unreadable_config_names_the_file_before_any_work(home, tmp_path, capsys):
    missing = tmp_path / "missing.yaml"
    assert run(_cli(home, "retrain", "--config", str(missing))) == 2  # ConfigError
    err = capsys.readouterr().err
    assert "missing.yaml: cannot read training config" in err and "Traceback" not in err


@pytest.mark.slow
def test_feature_commands_end_to_end_on_synthetic_data(home, capsys):
    assert (
        run(_cli(home, "data", "ingest", "--source", "synthetic", "--users", "40", "--items", "60"))
        == 0
    )
    assert run(_cli(home, "features", "apply")) == 0
    assert run(_cli(home, "features", "materialize")) == 0
    capsys.readouterr()
    assert run(_cli(home, "features", "show", "--user", "3", "--item", "5")) == 0
    out = capsys.readouterr().out
    assert "occupation" in out and "genres" in out
    out_path = home / "ts.parquet"
    assert run(_cli(home, "features", "training-set", "--out", str(out_path))) == 0
    assert out_path.is_file() and (home / "ts.manifest.json").is_file()
    capsys.readouterr()
    assert run(_cli(home, "features", "show", "--user", "99999")) == 1
    assert "user 99999 has no features in the online store" in capsys.readouterr().err
    assert run(_cli(home, "features", "show", "--user", "abc")) == 1
    assert "user id 'abc' is not an integer" in capsys.readouterr().err
