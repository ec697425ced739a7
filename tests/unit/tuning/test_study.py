"""The study on an RDB storage: errors, pruning from reported values, stale trials, reports."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
import time
from types import SimpleNamespace

import optuna
import pytest
from metarec.errors import TuningStorageError
from metarec.training.progress import ProgressEvent
from metarec.tuning.objective import PruningReporter, objective_value
from metarec.tuning.reports import counts, write_reports
from metarec.tuning.spec import HeartbeatSpec, Objective, TuningSpec
from metarec.tuning.study import fail_stale, open_storage, open_study

PARAMS = {"inner_lr": {"type": "float", "low": 0.001, "high": 0.1, "log": True}}


def _spec(**values: object) -> TuningSpec:
    return TuningSpec.model_validate({"parameters": PARAMS, **values})


def test_a_storage_that_cannot_be_opened_is_named_without_its_password(tmp_path):
    with pytest.raises(TuningStorageError, match="Cannot open the study storage") as info:
        open_storage("not a url")
    assert "--storage" in str(info.value)
    with pytest.raises(TuningStorageError) as info:
        open_storage("postgresql+psycopg://user:s3cret@127.0.0.1:1/db")
    assert "s3cret" not in str(info.value) and "***" in str(info.value)
    with pytest.raises(TuningStorageError):
        open_storage(f"sqlite:///{tmp_path}/missing-dir/sub/x.db")


def test_a_worker_cannot_join_a_study_that_does_not_exist(tmp_path):
    storage = open_storage(f"sqlite:///{tmp_path}/tune.db")
    with pytest.raises(TuningStorageError, match="No study 'absent'"):
        open_study(storage, name="absent", spec=_spec(), create=False)
    study = open_study(storage, name="s", spec=_spec())
    again = open_study(storage, name="s", spec=_spec(), create=False)
    assert again.study_name == study.study_name == "s"
    with pytest.raises(TuningStorageError, match="optimises val_mae"):
        open_study(storage, name="s", spec=_spec(objective="val_ndcg@20"))


def _meta(step: int, val_mae: float) -> ProgressEvent:
    return ProgressEvent("meta", step, 20, 0.5, val_mae)


def test_the_reporter_prunes_a_trial_worse_than_the_median(tmp_path):
    storage = open_storage(f"sqlite:///{tmp_path}/tune.db")
    spec = _spec(pruner={"type": "median", "n_startup_trials": 1, "n_warmup_steps": 0})
    study = open_study(storage, name="prune", spec=spec)
    good = study.ask()
    reporter = PruningReporter(good, objective=Objective.VAL_MAE, eval_every=5)
    for step in range(1, 21):
        reporter(_meta(step, 0.70))  # only steps 5, 10, 15, 20 are validations
    study.tell(good, 0.70)
    assert study.trials[0].intermediate_values == {5: 0.70, 10: 0.70, 15: 0.70, 20: 0.70}
    bad = study.ask()
    reporter = PruningReporter(bad, objective=Objective.VAL_MAE, eval_every=5)
    reporter(ProgressEvent("factor", 5, 20, 0.5, 0.99))  # another loop's MAE: not reported
    for step in range(1, 5):
        reporter(_meta(step, 0.95))
    with pytest.raises(optuna.TrialPruned, match="step 5"):
        reporter(_meta(5, 0.95))
    study.tell(bad, state=optuna.trial.TrialState.PRUNED)
    assert counts(study)["pruned"] == 1 and counts(study)["complete"] == 1


CRASH = """
import os, sys, optuna
storage = optuna.storages.RDBStorage(sys.argv[1], heartbeat_interval=1, grace_period=2)
study = optuna.load_study(study_name="crash", storage=storage)
def objective(trial):
    import time; time.sleep(1.5)
    os._exit(3)  # the worker dies in the middle of its trial
study.optimize(objective, n_trials=1)
"""


@pytest.mark.slow
def test_a_crashed_workers_trial_is_failed_not_left_running(tmp_path):
    url = f"sqlite:///{tmp_path}/tune.db"
    spec = _spec(heartbeat={"interval_s": 1, "grace_period_s": 2})
    study = open_study(open_storage(url, heartbeat=spec.heartbeat), name="crash", spec=spec)
    done = subprocess.run([sys.executable, "-c", CRASH, url], check=False, timeout=120)
    assert done.returncode == 3
    assert counts(study)["running"] == 1  # what a crash leaves behind
    time.sleep(spec.heartbeat.grace_period_s + 1)
    fail_stale(study)
    assert counts(study)["running"] == 0 and counts(study)["fail"] == 1


@pytest.mark.slow
def test_reports_are_written_and_name_the_best(tmp_path):
    storage = open_storage(f"sqlite:///{tmp_path}/tune.db", heartbeat=HeartbeatSpec())
    study = open_study(storage, name="report", spec=_spec())
    for n, value in enumerate([0.80, 0.74, 0.77]):
        trial = study.ask()
        trial.suggest_float("inner_lr", 0.001, 0.1, log=True)
        trial.suggest_int("inner_steps", 1, 5)
        trial.report(value + 0.05, step=5)
        study.tell(trial, value if n != 2 else None, state=_state(n))
    reports = write_reports(study, tmp_path / "reports")
    rows = list(csv.DictReader(reports.trials_csv.open()))
    assert [r["state"] for r in rows] == ["complete", "complete", "pruned"]
    assert rows[2]["value"] == "0.82" and rows[2]["last_step"] == "5"
    assert "| number | state | value |" in reports.trials_md.read_text()
    best = json.loads(reports.best_params.read_text())
    assert best["trial"] == 1 and best["value"] == pytest.approx(0.74)
    assert best["study"] == "report" and set(best["params"]) == {"inner_lr", "inner_steps"}
    for plot in ("history_html", "history_png", "importance_html", "importance_png"):
        path = getattr(reports, plot)
        assert path is not None and path.stat().st_size > 1000, plot
    assert reports.history_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert set(reports.paths()) >= {"trials_csv", "best_params", "importance_png"}


def _state(n: int) -> optuna.trial.TrialState:
    return optuna.trial.TrialState.PRUNED if n == 2 else optuna.trial.TrialState.COMPLETE


def test_a_ranker_objective_reports_only_validations_that_carry_ndcg(tmp_path):
    storage = open_storage(f"sqlite:///{tmp_path}/tune.db")
    study = open_study(storage, name="rank", spec=_spec(objective="val_ndcg@20"))
    trial = study.ask()
    reporter = PruningReporter(trial, objective=Objective.VAL_NDCG, eval_every=100)
    reporter(ProgressEvent("ranker", 100, 300))  # today's ranker events: no score, no report
    reporter(_meta(100, 0.7))  # the rating loop's MAE is not this objective
    reporter(SimpleNamespace(phase="ranker", step=100, val_ndcg=0.20))
    reporter(SimpleNamespace(phase="ranker", step=200, val_ndcg=0.15))
    assert study.trials[0].intermediate_values == {100: 0.20, 200: 0.20}  # best so far


def test_the_objective_value_comes_from_validation_users_only():
    card = SimpleNamespace(
        training={"best_val_mae": 0.74},
        ranker={"history": {"meta_ranker": [{"val_ndcg@20": 0.2}, {"val_ndcg@20": 0.25}]}},
        metrics={"new_user": {"10": {"maml": {"mae": 0.1}}}},  # test users: never the value
    )
    assert objective_value(card, Objective.VAL_MAE) == 0.74
    assert objective_value(card, Objective.VAL_NDCG) == 0.25
    never = SimpleNamespace(training={"best_val_mae": None}, ranker=None)
    assert math.isnan(objective_value(never, Objective.VAL_MAE))
    assert math.isnan(objective_value(never, Objective.VAL_NDCG))
