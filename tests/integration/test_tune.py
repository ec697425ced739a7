"""`metarec tune` on the synthetic training set: a shared SQLite study over two worker processes,
pruning from the reported validation MAE, the best through the gate with its study and trial in
the card, and `tune trial` printing Katib's metric line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import torch
import yaml
from metarec.cli.main import run
from metarec.config import load_settings
from metarec.ops.tuning import TuneRequest, join_study, tune
from metarec.registry import Registry, VersionRef
from metarec.registry.service import database_url
from metarec.testing.registry import postgres_schema
from metarec.testing.serving import mark_validated
from metarec.training.artifact import read_card
from metarec.tuning.objective import WORKER_ATTR
from metarec.tuning.provenance import card_provenance
from metarec.tuning.spec import load_spec
from metarec.tuning.study import open_storage, open_study

pytestmark = pytest.mark.integration

BASE = {  # the final re-training's config: tiny, with the ranker and the factor fold-in
    "embedding_dim": 8,
    "hidden": [16, 16],
    "max_steps": 8,
    "ranker_max_steps": 20,
    "ranker_eval_every": 10,
    "ranker_dim": 16,
    "factor_pretrain_steps": 20,
    "factor_max_steps": 6,
    "meta_batch_size": 8,
    "inner_steps": 2,
    "eval_every": 4,
    "global_epochs": 1,
    "finetune_steps": 2,
    "support_sizes": ["5", "all"],
}
SPACE = {
    "objective": "val_mae",
    "trial": {
        "max_steps": 6,
        "eval_every": 2,
        "patience": 10,
        "ranker": False,
        "factor_model": False,
        "scenarios": ["new_user"],
        "support_sizes": ["5"],
    },
    "pruner": {"type": "median", "n_startup_trials": 1},
    "sampler": {"seed": 1, "n_startup_trials": 2},
    "heartbeat": {"interval_s": 1, "grace_period_s": 2},
    "parameters": {
        "inner_lr": {"type": "float", "low": 0.002, "high": 0.04, "log": True},
        "hidden_width": {"type": "categorical", "choices": [8, 16]},
    },
}


@pytest.fixture
def files(synthetic_home, tmp_path) -> dict[str, Path]:
    """A validated copy of the synthetic training set, a base config and a tuning file."""
    source = synthetic_home.paths.training_sets / "synthetic.parquet"
    config, space = tmp_path / "base.yaml", tmp_path / "space.yaml"
    config.write_text(yaml.safe_dump(BASE))
    space.write_text(yaml.safe_dump(SPACE))
    return {
        "training_set": mark_validated(
            source, tmp_path / "ts" / "synthetic.parquet", result_id="r-1"
        ),
        "config": config,
        "space": space,
    }


@pytest.fixture(autouse=True)
def _one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.mark.slow
def test_two_workers_share_the_study_and_the_best_goes_through_the_gate(settings, files, tmp_path):
    storage = f"sqlite:///{tmp_path}/study.db"
    finished = []
    outcome = tune(
        settings,
        TuneRequest(
            space=files["space"],
            trials=4,
            workers=2,
            study="shared",
            storage=storage,
            training_set=str(files["training_set"]),
            config=files["config"],
        ),
        on_trial=finished.append,
    )
    assert outcome.worker_exit_codes == [0, 0]
    states = outcome.counts
    assert states["complete"] + states["pruned"] == 4 and states["fail"] == 0, states
    assert sorted(t.number for t in finished) == [0, 1, 2, 3]
    study = open_study(open_storage(storage), name="shared", spec=load_spec(files["space"]))
    workers = {t.user_attrs.get(WORKER_ATTR) for t in study.trials}
    assert None not in workers and len(workers) >= 1  # every trial names its worker process
    assert [row.number for row in outcome.trials] == [0, 1, 2, 3]
    for name in ("trials_csv", "trials_md", "best_params", "history_html", "history_png"):
        assert Path(outcome.reports[name]).is_file(), name
    best = json.loads(Path(outcome.reports["best_params"]).read_text())
    assert best["trial"] == outcome.best_trial and best["study"] == "shared"
    assert outcome.best is not None
    card = read_card(Path(outcome.best.candidate.artifact))
    provenance = card_provenance(card)
    assert provenance.study == "shared" and provenance.trial == outcome.best_trial
    assert card.ranker is not None  # re-trained on the base config, not the trial budget
    assert card.hyperparameters["inner_lr"] == pytest.approx(best["params"]["inner_lr"])
    registration = outcome.best.registration
    if registration.registered is not None:  # the gate's verdict on tiny models may differ
        with Registry.open(settings) as registry:
            info = registration.registered
            ref = VersionRef(model=info.model, version=info.version)
            stored = registry.read_card(ref)
        assert card_provenance(stored) == provenance
    else:
        assert registration.rejection is not None


@pytest.mark.slow
def test_a_trial_worse_than_the_median_is_pruned_on_the_registry_database(settings, files):
    with Registry.open(settings) as registry:  # the registry's tables first
        assert registry.list_models() == []
    storage = database_url(settings)  # the default storage: the registry's own database
    spec = load_spec(files["space"])
    study = open_study(open_storage(storage), name="prune", spec=spec)
    distributions = {
        "inner_lr": optuna.distributions.FloatDistribution(0.002, 0.04, log=True),
        "hidden_width": optuna.distributions.CategoricalDistribution([8, 16]),
    }
    study.add_trial(  # a finished trial no real one can beat: MAE 0 at every validation
        optuna.trial.create_trial(
            params={"inner_lr": 0.01, "hidden_width": 8},
            distributions=distributions,
            value=0.0,
            intermediate_values={2: 0.0, 4: 0.0, 6: 0.0},
        )
    )
    ran = join_study(
        settings,
        study="prune",
        space=files["space"],
        storage=None,
        training_set=str(files["training_set"]),
        config=files["config"],
        trials=1,
    )
    assert ran == 1
    trial = study.trials[1]
    assert trial.state is optuna.trial.TrialState.PRUNED
    assert list(trial.intermediate_values) == [2]  # stopped at its first validation
    with Registry.open(settings) as registry:  # Optuna's tables sit beside the registry's
        assert registry.list_models() == []


def test_tune_trial_prints_the_objective_line(files, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("METAREC_HOME", str(tmp_path / "home"))
    args = ["tune", "trial", "--space", str(files["space"]), "--config", str(files["config"])]
    args += ["--training-set", str(files["training_set"]), "--param", "inner_lr=0.01"]
    code = run([*args, "--param", "hidden_width=8"])
    out = capsys.readouterr().out
    assert code == 0, out
    lines = out.splitlines()
    objective = [line for line in lines if line.startswith("objective=")]
    assert len(objective) == 1 and 0 < float(objective[0].split("=")[1]) < 5
    assert f"val_mae={objective[0].split('=')[1]}" in lines
    code = run([*args, "--param", "outer_lr=0.1"])
    assert code == 2 and "not a parameter of the search space" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_tune_prints_a_line_per_trial_the_table_and_the_reports(
    files, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("METAREC_HOME", str(tmp_path / "home"))
    args = ["tune", "--space", str(files["space"]), "--config", str(files["config"])]
    args += ["--training-set", str(files["training_set"]), "--trials", "2", "--study", "cli"]
    args += ["--storage", f"sqlite:///{tmp_path}/cli.db", "--no-register"]
    code = run(args)
    out = capsys.readouterr().out
    assert code == 0, out
    assert "[1/2] trial 0 complete value" in out and "[2/2] trial 1 " in out
    assert "Study cli: val_mae (minimize)" in out and "Trials: 2 complete" in out
    assert "Report trials_csv: " in out and "Report history_png: " in out
    assert (tmp_path / "home" / "tuning" / "cli" / "reports" / "trials.md").is_file()
    code = run(["tune", "--storage", "nonsense://", "--training-set", "x", "--study", "y"])
    err = capsys.readouterr().err
    assert code == 2 and "Cannot open the study storage" in err


JOIN = """
import sys, optuna
study = optuna.load_study(study_name="pg", storage=sys.argv[1])
trial = study.ask()
trial.suggest_float("inner_lr", 0.002, 0.04, log=True)
study.tell(trial, 0.5)
"""


def test_the_study_shares_the_registrys_postgresql_database(tmp_path):
    try:
        url, drop = postgres_schema()
    except OSError as exc:
        pytest.skip(str(exc))
    try:
        settings = load_settings(home=tmp_path / "home", registry={"database_url": url})
        with Registry.open(settings) as registry:
            assert registry.list_models() == []
        study = open_study(open_storage(database_url(settings)), name="pg", spec=load_spec())
        other = subprocess.run([sys.executable, "-c", JOIN, url], check=False, timeout=120)
        assert other.returncode == 0  # another process (a pod) ran a trial of the same study
        assert [t.value for t in study.trials] == [0.5]
        with Registry.open(settings) as registry:  # the registry's tables are untouched
            assert registry.list_models() == []
    finally:
        drop()
