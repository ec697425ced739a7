"""benchmarks/tune.py: its options and the JSON object it prints (the study itself is not run)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import SimpleNamespace

from metarec.tuning.spec import load_spec

REPO = Path(__file__).resolve().parents[3]


def _benchmark():
    sys.path.insert(0, str(REPO / "benchmarks"))
    spec = importlib.util.spec_from_file_location("tune_benchmark", REPO / "benchmarks" / "tune.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_defaults_are_the_fixed_study():
    args = _benchmark().parse_args([])
    assert (args.trials, args.workers, args.space) == (20, 2, None)
    assert args.data.name == "ml-100k.zip"


def test_the_json_puts_best_and_default_side_by_side():
    outcome = SimpleNamespace(
        objective="val_mae",
        direction="minimize",
        best_value=0.70,
        best_trial=7,
        best_params={"inner_lr": 0.01},
        counts={"complete": 12, "pruned": 8, "fail": 0, "running": 0},
        reports={"trials_csv": "/x/trials.csv"},
    )
    payload = _benchmark().result(outcome, 0.75, 301.23, load_spec())
    assert payload["best_objective"] == 0.70 and payload["default_objective"] == 0.75
    assert payload["best_beats_default"] is True
    assert abs(payload["improvement"] - 0.05 / 0.75) < 1e-12
    assert payload["trials"] == {"complete": 12, "pruned": 8, "fail": 0}
    assert payload["wall_s"] == 301.2 and payload["budget"]["max_steps"] == 120
    worse = SimpleNamespace(**{**vars(outcome), "best_value": 0.80})
    assert _benchmark().result(worse, 0.75, 1.0, load_spec())["best_beats_default"] is False
