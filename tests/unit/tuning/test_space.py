"""The tuning file: parsing, every key checked with the fix, fixed trial parameters, mapping."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import yaml
from metarec.errors import TuningError, TuningSpaceError, UnknownTuningParameterError
from metarec.training.config import TrainingConfig
from metarec.tuning.objective import TrialSetup
from metarec.tuning.space import FloatRange, IntRange, config_values, tunable_names
from metarec.tuning.spec import Objective, default_space_path, load_spec

SPACE = {
    "objective": "val_mae",
    "trial": {"max_steps": 20, "ranker": False},
    "pruner": {"type": "hyperband", "reduction_factor": 2},
    "sampler": {"seed": 3},
    "parameters": {
        "algorithm": {"type": "categorical", "choices": ["maml", "fomaml"]},
        "inner_lr": {"type": "float", "low": 0.001, "high": 0.04, "log": True},
        "inner_steps": {"type": "int", "low": 1, "high": 4},
        "hidden_width": {"type": "categorical", "choices": [16, 32]},
        "meta_train_embeddings": {"type": "categorical", "choices": [True, False]},
    },
}


def _write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return path


def _with(**changes: object) -> dict:
    data = yaml.safe_load(yaml.safe_dump(SPACE))
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        node = data
        for key in parents:
            node = node[key]
        node[last] = value
    return data


def test_the_shipped_space_loads_and_every_name_is_a_training_field():
    spec = load_spec()
    assert default_space_path().is_file()
    assert spec.objective is Objective.VAL_MAE and spec.objective.direction == "minimize"
    assert set(spec.parameters) <= set(tunable_names())
    assert isinstance(spec.parameters["inner_lr"], FloatRange) and spec.parameters["inner_lr"].log
    TrainingConfig.build(spec.trial_values())  # the trial budget is a valid config


def test_a_space_file_parses_into_typed_ranges(tmp_path):
    spec = load_spec(_write(tmp_path, SPACE))
    assert isinstance(spec.parameters["inner_steps"], IntRange)
    assert spec.pruner.type == "hyperband" and spec.pruner.reduction_factor == 2
    assert spec.sampler.seed == 3
    assert Objective("val_ndcg@20").direction == "maximize"


@pytest.mark.parametrize(
    ("data", "key", "words"),
    [
        (
            _with(parameters__inner_rate={"type": "float", "low": 0.1, "high": 1}),
            "parameters.inner_rate",
            "not a tunable training field",
        ),
        (
            _with(parameters__inner_lr={"type": "float", "low": 0, "high": 1, "log": True}),
            "parameters.inner_lr",
            "low > 0",
        ),
        (
            _with(parameters__inner_steps={"type": "int", "low": 5, "high": 1}),
            "parameters.inner_steps",
            "above high",
        ),
        (_with(parameters__algorithm={"type": "categorical"}), "parameters.algorithm", "required"),
        (_with(objective="test_mae"), "objective", "val_mae"),
        (_with(pruner__type="percentile"), "pruner.type", "median"),
        (_with(trial__max_steps=-1), "trial", "max_steps"),
        (_with(extra_key=1), "extra_key", "not permitted"),
    ],
)
def test_a_bad_space_file_names_the_key_and_the_fix(tmp_path, data, key, words):
    with pytest.raises(TuningSpaceError) as info:
        load_spec(_write(tmp_path, data))
    assert info.value.key.startswith(key), info.value
    assert words in str(info.value) and "Fix:" in str(info.value)


def test_overlapping_support_ranges_are_refused(tmp_path):
    data = _with(
        parameters__train_support_min={"type": "int", "low": 2, "high": 12},
        parameters__train_support_max={"type": "int", "low": 10, "high": 30},
    )
    with pytest.raises(TuningSpaceError, match="train_support_min's range"):
        load_spec(_write(tmp_path, data))


def test_a_missing_or_malformed_file_is_named(tmp_path):
    with pytest.raises(TuningSpaceError, match="cannot be read"):
        load_spec(tmp_path / "absent.yaml")
    with pytest.raises(TuningSpaceError, match="not valid YAML"):
        load_spec(_write(tmp_path, "parameters: [unclosed"))
    with pytest.raises(TuningSpaceError, match="must be a mapping"):
        load_spec(_write(tmp_path, "- a\n- b\n"))


def test_fixed_parameters_parse_against_the_space(tmp_path):
    space = load_spec(_write(tmp_path, SPACE)).space
    fixed = space.fixed(
        [
            "inner_lr=0.01",
            "algorithm=FOMAML",
            "hidden_width=32",
            "meta_train_embeddings=false",
            "inner_steps=3",
        ]
    )
    assert fixed == {
        "inner_lr": 0.01,
        "algorithm": "fomaml",
        "hidden_width": 32,
        "meta_train_embeddings": False,
        "inner_steps": 3,
    }
    with pytest.raises(UnknownTuningParameterError, match="outer_lr: not a parameter"):
        space.fixed(["outer_lr=0.001"])
    with pytest.raises(TuningError, match="outside"):
        space.fixed(["inner_lr=0.5"])
    with pytest.raises(TuningError, match="not one of"):
        space.fixed(["algorithm=sgd"])
    with pytest.raises(TuningError, match="name=value"):
        space.fixed(["inner_lr"])


def test_width_parameters_set_hidden_and_the_trial_budget_sits_under_the_params(tmp_path):
    base = TrainingConfig.build({"hidden": [64, 64, 64], "max_steps": 500, "seed": 4})
    assert config_values({"hidden_width": 16}, base) == {"hidden": [16, 16, 16]}
    assert config_values({"hidden_layers": 1}, base) == {"hidden": [64]}
    spec = load_spec(_write(tmp_path, SPACE))
    setup = TrialSetup(spec=spec, base=base, training_set="ts.parquet", workdir=tmp_path)
    trial = setup.trial_config({"hidden_width": 32, "inner_lr": 0.01})
    assert trial.hidden == (32, 32, 32) and trial.max_steps == 20 and not trial.ranker
    assert trial.seed == 4 and trial.inner_lr == 0.01
    final = setup.final_config({"hidden_width": 32, "inner_lr": 0.01})
    assert final.max_steps == 500 and final.ranker and final.hidden == (32, 32, 32)


def test_sampling_follows_the_ranges():
    spec = load_spec()
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(5):
        params = spec.space.suggest(study.ask())
        assert 0.002 <= params["inner_lr"] <= 0.04
        assert params["algorithm"] in {"maml", "fomaml", "metasgd"}
        assert params["train_support_min"] <= params["train_support_max"]
