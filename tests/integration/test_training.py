"""Meta-training end to end on the synthetic Feast training set: validation gate, artifact,
evaluation, checkpoint/resume, and the CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from metarec.cli.main import run
from metarec.features.training_set import manifest_path, read_manifest
from metarec.testing.serving import mark_validated
from metarec.training.artifact import load_artifact
from metarec.training.config import TrainingConfig
from metarec.training.evaluation import evaluate_artifact, evaluate_ranking_artifact
from metarec.training.trainer import ProgressEvent, train
from metarec.validation.record import (
    TrainingSetNotValidatedError,
)

pytestmark = pytest.mark.integration

TINY = {
    "embedding_dim": 8,
    "hidden": [16, 16],
    "max_steps": 12,
    "ranker_max_steps": 30,
    "factor_pretrain_steps": 30,
    "factor_max_steps": 10,
    "ranker_eval_every": 15,
    "ranker_dim": 16,
    "meta_batch_size": 8,
    "inner_steps": 2,
    "eval_every": 4,
    "patience": 10,
    "checkpoint_every": 5,
    "global_epochs": 1,
    "finetune_steps": 2,
    "min_ratings": 13,
    "max_ratings": 100,
    "support_sizes": ["5", "all"],
}
METHODS = {
    "global_mean",
    "item_bias",
    "user_item_bias",
    "global_model",
    "finetune",
    "factor_map",
}


@pytest.fixture
def training_set(synthetic_home, tmp_path) -> Path:
    """A private copy of the synthetic training set, with a passing validation record."""
    source = synthetic_home.paths.training_sets / "synthetic.parquet"
    return mark_validated(source, tmp_path / "ts" / "synthetic.parquet", result_id="result-1")


@pytest.fixture(autouse=True)
def _one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def test_training_refuses_an_unvalidated_training_set(synthetic_home, tmp_path):
    source = synthetic_home.paths.training_sets / "synthetic.parquet"
    target = tmp_path / "raw.parquet"
    shutil.copy(source, target)
    shutil.copy(manifest_path(source), manifest_path(target))
    with pytest.raises(TrainingSetNotValidatedError, match="has not been validated"):
        train(target, config=TrainingConfig.build(TINY), out=tmp_path / "art")
    assert not (tmp_path / "art").exists()


def test_train_writes_a_complete_artifact_that_evaluates_the_same(training_set, tmp_path):
    config = TrainingConfig.build({**TINY, "algorithm": "fomaml", "device": "cpu"})
    events = []
    card = train(training_set, config=config, out=tmp_path / "art", on_progress=events.append)
    # The ranker reports its validation NDCG@20 at each validation (what tuning prunes on).
    validated = [(e.step, e.val_ndcg) for e in events if e.phase == "ranker" and e.val_ndcg]
    assert [step for step, _ in validated] == [15, 30]
    manifest = read_manifest(training_set)
    assert card.algorithm == "fomaml"
    assert card.dataset_fingerprint == manifest.fingerprint
    assert card.feature_service == manifest.feature_service
    assert card.snapshot_id == manifest.snapshot_id
    assert card.validation_result_id == "result-1"
    assert set(card.metrics) == {"new_user", "new_item", "new_user_new_item"}
    new_user = card.metrics["new_user"]
    assert set(new_user) == {"5", "all"}
    assert set(new_user["5"]) == METHODS | {"fomaml"}
    assert set(new_user["5"]["fomaml"]) == {"mae", "rmse", "ndcg@1", "ndcg@3", "ndcg@5"}
    assert card.test_users["new_user"] and set(card.test_users["new_user"]) <= set(
        card.split["test_users"]
    )
    _model, loaded = load_artifact(tmp_path / "art")
    assert loaded.weights_sha256 == card.weights_sha256
    again = evaluate_artifact(
        tmp_path / "art", training_set, scenarios=["new_user"], support_sizes=["5", "all"]
    )
    for size in ("5", "all"):
        for method, values in card.metrics["new_user"][size].items():
            assert again["new_user"][size][method] == pytest.approx(values, abs=1e-6), method
    subset = card.test_users["new_user"][:3]
    few = evaluate_artifact(
        tmp_path / "art",
        training_set,
        scenarios=["new_user"],
        support_sizes=[5],
        users={"new_user": subset},
    )
    assert few["new_user"]["5"]["fomaml"] != again["new_user"]["5"]["fomaml"]
    # The gate's production comparison re-ranks the catalogue with the stored ranker on the
    # card's users: it reproduces the card's ranking table (every method it re-evaluates).
    ranking = evaluate_ranking_artifact(tmp_path / "art", training_set, scenarios=["new_user"])
    assert set(ranking["new_user"]) == set(card.ranking["new_user"])
    for cell, methods in ranking["new_user"].items():
        for method, values in methods.items():
            stored = card.ranking["new_user"][cell][method]
            assert values == pytest.approx(stored, abs=1e-6), (cell, method)


class KilledError(Exception):
    """Stands in for the process being killed mid-training."""


def test_resume_after_interruption_reaches_the_same_final_state(training_set, tmp_path):
    """Asserted: a run killed at step 8 resumes from its step-5 checkpoint (first step run
    again is 6) and ends with weights bitwise equal to an uninterrupted run."""
    config = TrainingConfig.build({**TINY, "support_sizes": ["5"], "scenarios": ["new_user"]})
    train(training_set, config=config, out=tmp_path / "straight")

    def kill_at_8(event: ProgressEvent) -> None:
        if event.phase == "meta" and event.step == 8:
            raise KilledError

    with pytest.raises(KilledError):
        train(training_set, config=config, out=tmp_path / "resumed", on_progress=kill_at_8)
    assert not (tmp_path / "resumed").exists()
    assert (tmp_path / "resumed.checkpoints" / "checkpoint.safetensors").is_file()

    steps: list[int] = []
    card = train(
        training_set,
        config=config,
        out=tmp_path / "resumed",
        on_progress=lambda e: steps.append(e.step) if e.phase == "meta" else None,
    )
    assert steps[0] == 6 and steps[-1] == 12
    assert card.training["steps"] == 12
    assert not (tmp_path / "resumed.checkpoints").exists()  # removed once the artifact exists
    a, _ = load_artifact(tmp_path / "straight")
    b, _ = load_artifact(tmp_path / "resumed")
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(x, y), name


def test_checkpoint_of_another_run_is_refused(training_set, tmp_path):
    from metarec.errors import CheckpointError

    config = TrainingConfig.build({**TINY, "scenarios": ["new_user"]})

    def kill_at_6(event: ProgressEvent) -> None:
        if event.phase == "meta" and event.step == 6:
            raise KilledError

    with pytest.raises(KilledError):
        train(training_set, config=config, out=tmp_path / "art", on_progress=kill_at_6)
    other = TrainingConfig.build({**TINY, "max_steps": 5, "seed": 9, "scenarios": ["new_user"]})
    with pytest.raises(CheckpointError, match="different run"):
        train(training_set, config=other, out=tmp_path / "art")


def test_cli_train_and_evaluate(training_set, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("METAREC_HOME", str(tmp_path / "home"))
    config_file = tmp_path / "train.yaml"
    config_file.write_text(yaml.safe_dump({**TINY, "max_steps": 4, "scenarios": ["new_user"]}))
    out = tmp_path / "cli-art"
    code = run(
        [
            "train",
            "--config",
            str(config_file),
            "--algorithm",
            "reptile",
            "--device",
            "cpu",
            "--training-set",
            str(training_set),
            "--out",
            str(out),
        ]
    )
    assert code == 0, capsys.readouterr()
    assert json.loads((out / "model_card.json").read_text())["algorithm"] == "reptile"
    code = run(
        [
            "evaluate",
            str(out),
            "--training-set",
            str(training_set),
            "--scenario",
            "new_user",
            "--support-sizes",
            "5",
            "10",
            "all",
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0, printed
    result = json.loads((out / "evaluation.json").read_text())
    assert set(result["new_user"]) == {"5", "10", "all"}
    assert (out / "evaluation_mae.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"JSON: {out / 'evaluation.json'}" in printed
    assert f"Plot: {out / 'evaluation_mae.png'}" in printed


def test_cli_rejects_bad_config_and_missing_cuda(training_set, tmp_path, capsys):
    config_file = tmp_path / "bad.yaml"
    config_file.write_text("inner_steps: -1\nunknown_key: 3\n")
    code = run(["train", "--config", str(config_file), "--training-set", str(training_set)])
    err = capsys.readouterr().err
    assert code != 0 and "inner_steps" in err and "unknown_key" in err
    if not torch.cuda.is_available():
        code = run(
            [
                "train",
                "--device",
                "cuda",
                "--training-set",
                str(training_set),
                "--out",
                str(tmp_path / "x"),
            ]
        )
        assert code != 0 and "no CUDA device" in capsys.readouterr().err


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_training_on_cuda(training_set, tmp_path):
    config = TrainingConfig.build({**TINY, "device": "cuda", "scenarios": ["new_user"]})
    card = train(training_set, config=config, out=tmp_path / "gpu")
    assert card.metrics["new_user"]["5"]["maml"]["mae"] > 0


def test_frozen_embeddings_stay_as_the_global_model_left_them(training_set, tmp_path):
    from metarec.training.artifact import load_global_model

    config = TrainingConfig.build(
        {**TINY, "meta_train_embeddings": False, "scenarios": ["new_user"], "support_sizes": ["5"]}
    )
    train(training_set, config=config, out=tmp_path / "art")
    model, card = load_artifact(tmp_path / "art")
    global_model = load_global_model(tmp_path / "art", card)
    meta_state, global_state = model.state_dict(), global_model.state_dict()
    for name, value in meta_state.items():
        same = torch.equal(value, global_state[name])
        assert same if name.startswith(("fields.", "genres.")) else True, name
    assert not torch.equal(meta_state["decision.out.weight"], global_state["decision.out.weight"])


def test_factor_fold_in_is_evaluated_stored_and_verified(training_set, tmp_path):
    from metarec.errors import ArtifactError
    from metarec.training.artifact import FACTOR_WEIGHTS, load_factor_model, read_card

    config = TrainingConfig.build({**TINY, "scenarios": ["new_user"], "support_sizes": ["5"]})
    card = train(training_set, config=config, out=tmp_path / "art")
    assert set(card.metrics["new_user"]["5"]["factor_map"]) == {
        "mae",
        "rmse",
        "ndcg@1",
        "ndcg@3",
        "ndcg@5",
    }
    assert card.factor_model is not None and card.factor_model["method"] == "factor_map"
    assert card.factor_model["training"]["steps"] <= TINY["factor_max_steps"]
    assert FACTOR_WEIGHTS in card.files
    factor = load_factor_model(tmp_path / "art", read_card(tmp_path / "art"))
    assert factor is not None
    again = load_factor_model(tmp_path / "art", card)
    for (name, a), (_, b) in zip(
        factor.state_dict().items(), again.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name
    assert factor.config.to_dict() == card.factor_model["config"]

    weights = tmp_path / "art" / FACTOR_WEIGHTS
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="does not match the model card"):
        load_factor_model(tmp_path / "art", card)
    with pytest.raises(ArtifactError, match="does not match the model card"):
        evaluate_artifact(tmp_path / "art", training_set, scenarios=["new_user"])


def test_factor_model_can_be_switched_off_and_needs_item_ids(training_set, tmp_path):
    from metarec.errors import ConfigError
    from metarec.training.artifact import FACTOR_WEIGHTS, load_factor_model

    config = TrainingConfig.build(
        {
            **TINY,
            "factor_model": False,
            "ranker": False,
            "scenarios": ["new_user"],
            "support_sizes": ["5"],
        }
    )
    card = train(training_set, config=config, out=tmp_path / "art")
    assert "factor_map" not in card.metrics["new_user"]["5"]
    assert card.factor_model is None and FACTOR_WEIGHTS not in card.files
    assert load_factor_model(tmp_path / "art", card) is None
    with pytest.raises(ConfigError, match="factor_model needs item ids"):
        TrainingConfig.build({**TINY, "use_item_id": False})


def test_factor_fold_in_trains_when_no_validation_user_has_enough_ratings(synthetic_home, tmp_path):
    """Validation users with fewer ratings than the fold-in's validation needs (13): its
    meta-training runs its steps without early stopping and keeps its last weights."""
    import pandas as pd
    from metarec.training.preparation import config_split

    config = TrainingConfig.build({**TINY, "scenarios": ["new_user"], "support_sizes": ["5"]})
    source = synthetic_home.paths.training_sets / "synthetic.parquet"
    split = config_split(pd.read_parquet(source), config)
    val_users = set(split.val_users)

    def few_val_ratings(frame):
        rank = frame.groupby("user_id").cumcount()
        return frame[~frame["user_id"].isin(val_users) | (rank < 12)].reset_index(drop=True)

    few = tmp_path / "ts" / "few.parquet"
    training_set = mark_validated(source, few, transform=few_val_ratings)
    card = train(training_set, config=config, out=tmp_path / "art")
    trained = card.factor_model["training"]
    assert trained["steps"] == TINY["factor_max_steps"], trained
    assert "factor_map" in card.metrics["new_user"]["5"]
