"""`metarec gate`, `metarec models …` as a user runs them, and the pipeline components."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from metarec.cli.main import run
from metarec.testing.registry import write_fixture_artifact

pytestmark = pytest.mark.integration


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("METAREC_HOME", str(home))
    monkeypatch.setenv("METAREC_REGISTRY__EXPORT_BENTOML", "false")
    monkeypatch.setenv("METAREC_ACTOR", "alice")
    monkeypatch.setenv("COLUMNS", "250")
    return home


def test_cli_round_trip(home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    a1 = write_fixture_artifact(tmp_path / "a1", seed=1)
    a2 = write_fixture_artifact(tmp_path / "a2", seed=2, mae=0.77)
    bad = write_fixture_artifact(tmp_path / "bad", seed=3, mae=0.99)

    assert run(["gate", str(a1), "--json", str(tmp_path / "d.json")]) == 0
    out = capsys.readouterr().out
    assert "ACCEPTED" in out and "margin: mae better than global_mean" in out
    assert "0.9500" in out  # the baseline's number is printed
    assert json.loads((tmp_path / "d.json").read_text())["accepted"] is True

    assert run(["models", "register", str(a1)]) == 0
    assert "registered metarec:v1 (staging)" in capsys.readouterr().out
    assert run(["models", "promote", "1", "--to", "production", "--reason", "first"]) == 0
    assert run(["models", "register", str(a2)]) == 0
    assert run(["models", "promote", "v2", "--reason", "better"]) == 0
    assert "metarec:v2 is now in production; v1 archived" in capsys.readouterr().out

    assert run(["gate", str(bad)]) == 4
    out = capsys.readouterr().out
    assert "REJECTED" in out and "✗" in out
    assert run(["models", "register", str(bad)]) == 4
    err = capsys.readouterr().err
    assert "was not registered" in err and "margin: mae better than global_mean" in err

    assert run(["models", "rollback", "--reason", "online MAE up"]) == 0
    assert "metarec:v1 is in production again (v2 archived)" in capsys.readouterr().out

    assert run(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert "v1" in out and "production" in out and "archived" in out

    assert run(["models", "history"]) == 0
    out = capsys.readouterr().out
    for action in ("register", "promote", "archive", "reject", "rollback"):
        assert action in out
    assert "online MAE up" in out and "alice" in out

    assert run(["models", "show", "metarec:v1"]) == 0
    out = capsys.readouterr().out
    for text in ("Lineage", "dataset fingerprint", "validation-1", "Evaluation gate", "Ledger"):
        assert text in out

    assert run(["models", "archive", "2", "--reason", "x"]) == 1
    assert "already archived" in capsys.readouterr().err


def test_cli_errors_are_one_line(home: Path, capsys: pytest.CaptureFixture[str]):
    assert run(["models", "show", "latest"]) == 1
    err = capsys.readouterr().err
    assert "'latest' is not a model version" in err and "Fix:" in err
    assert run(["models", "promote", "3", "--reason", "x"]) == 1
    assert "No registered model named 'metarec'" in capsys.readouterr().err
    assert run(["models", "list"]) == 0
    assert "No versions of 'metarec' yet" in capsys.readouterr().out


def test_components_gate_then_register_idempotently(home: Path, tmp_path: Path):
    from metarec.components.gate_model import gate_model
    from metarec.components.register_model import register_model
    from metarec.errors import GateRejectedError

    artifact = write_fixture_artifact(tmp_path / "cand", seed=1)
    verdict = gate_model(artifact=str(artifact), home=str(home))
    assert verdict.accepted and Path(verdict.decision_path).is_file()
    json.loads(verdict.model_dump_json())
    first = register_model(artifact=str(artifact), decision=verdict.decision_path, home=str(home))
    again = register_model(artifact=str(artifact), decision=verdict.decision_path, home=str(home))
    assert (first.tag, first.stage, first.reused) == ("metarec:v1", "staging", False)
    assert (again.version, again.reused) == (1, True)

    bad = write_fixture_artifact(tmp_path / "bad", seed=2, mae=0.99)
    with pytest.raises(GateRejectedError, match="margin: mae better than global_mean"):
        gate_model(artifact=str(bad), home=str(home))
    soft = gate_model(artifact=str(bad), home=str(home), raise_on_reject=False)
    assert not soft.accepted and soft.broken_rules
    with pytest.raises(GateRejectedError):
        register_model(artifact=str(bad), decision=soft.decision_path, home=str(home))


def test_cli_bad_options_are_one_line_errors(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    assert run(["models", "register", str(write_fixture_artifact(tmp_path / "a", seed=1))]) == 0
    capsys.readouterr()
    bad = tmp_path / "evidence.json"
    bad.write_text("{not json")
    assert run(["models", "promote", "1", "--reason", "x", "--evidence", str(bad)]) == 1
    assert "cannot be read as JSON" in capsys.readouterr().err
    assert run(["models", "list", "--stage", "canary"]) == 2
    assert "'canary' is not one of" in capsys.readouterr().err
    evidence = tmp_path / "canary.json"
    evidence.write_text('{"verdict": "passed", "error_rate": 0.001}')
    assert (
        run(["models", "promote", "1", "--reason", "canary ok", "--evidence", str(evidence)]) == 0
    )
    assert run(["models", "history", "--version", "1"]) == 0
    assert '"verdict": "passed"' in capsys.readouterr().out
