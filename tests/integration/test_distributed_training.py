"""Distributed meta-training on 2 local CPU processes (gloo), against the single-process run.

One 2-process job (``metarec.testing.distributed.training_job``) computes meta-gradients, runs
a full training, a training killed at step 8, and resumes a single-process checkpoint; the tests
compare each with the single process on the same global meta-batch (7 tasks: 3 + 4 per rank).

Tolerance: the two runs do the same arithmetic in a different order (each rank pads its part
to its own longest sets; the gradients are sums of per-rank partial sums): float32 rounding
(~7 significant digits, 1–2 lost over sums of a few hundred terms). Gradients and weights
after 12 AdamW steps agree to atol 1e-6 / rtol 1e-5 (measured: ≤ 4e-7 and ≤ 6e-8). Reptile's
decision-layer pseudo-gradient is (θ − θ̃) / (inner lr · steps) = 25 × a difference of nearby
float32 weights, so its rounding is 25× larger: atol 2.5e-5 there (measured ≤ 3.4e-6). The
ranks themselves agree bitwise: every rank steps on the same all-reduced gradient.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from metarec.testing.distributed import (
    EARLY_STOP,
    TINY,
    meta_gradients,
    run_ranks,
    tiny_data,
    train_weights,
    training_job,
)
from metarec.testing.serving import mark_validated
from metarec.training.checkpoint import CHECKPOINT
from metarec.training.distributed import Ranks
from safetensors.torch import load_file

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ALGORITHMS = ("maml", "reptile")
GRAD_TOL = {"atol": 1e-6, "rtol": 1e-5}
PSEUDO_GRAD_TOL = {"atol": 2.5e-5, "rtol": 1e-5}  # Reptile's decision layers: 25 × the rounding
WEIGHT_TOL = {"atol": 1e-6, "rtol": 1e-5}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():  # like every rank; autouse: set before the module's other fixtures
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def job(tmp_path_factory) -> Path:
    """The 2-process job's outputs; it also resumes a single-process run killed at step 8."""
    out = tmp_path_factory.mktemp("ddp")
    config, data = tiny_data()
    train_weights(config, data, ranks=Ranks(), checkpoints=out / "single-killed", stop_at=8)
    run_ranks(training_job, 2, out, out / "single-killed", ALGORITHMS)
    return out


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> dict[str, torch.Tensor]:
    """The single-process run's final weights (12 steps, the same global meta-batches)."""
    config, data = tiny_data()
    weights, steps = train_weights(
        config, data, ranks=Ranks(), checkpoints=tmp_path_factory.mktemp("single")
    )
    assert weights is not None and steps == list(range(1, 13))
    return weights


def _assert_close(got: dict, want: dict, tol: dict, what: str, *, reptile: bool = False) -> None:
    assert set(got) == set(want), what
    for name in want:
        within = PSEUDO_GRAD_TOL if reptile and name.startswith("decision.") else tol
        torch.testing.assert_close(got[name], want[name], **within, msg=f"{what}: {name}")


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_meta_gradient_of_one_step_equals_the_single_process_gradient(job, algorithm):
    config, data = tiny_data(algorithm=algorithm)
    single = meta_gradients(data, config, Ranks())
    assert int(single.pop("tasks")) == 7
    ranks = [load_file(job / f"grad-{algorithm}-rank{r}.safetensors") for r in (0, 1)]
    assert [int(r.pop("tasks")) for r in ranks] == [3, 4]  # uneven parts of the 7 tasks
    reptile = algorithm == "reptile"
    _assert_close(ranks[0], single, GRAD_TOL, f"{algorithm} gradient", reptile=reptile)
    for name, value in ranks[0].items():  # every rank holds the same all-reduced gradient
        assert torch.equal(value, ranks[1][name]), name


def test_weights_after_n_steps_equal_the_single_process_run(job, straight):
    ranks = [load_file(job / f"weights-rank{r}.safetensors") for r in (0, 1)]
    _assert_close(ranks[0], straight, WEIGHT_TOL, "weights after 12 steps")
    for name, value in ranks[0].items():
        assert torch.equal(value, ranks[1][name]), name
    assert (job / "full" / CHECKPOINT).is_file()  # written by rank 0


def test_validation_and_early_stopping_decide_alike_on_every_rank(job):
    """Rank 0 validates and broadcasts the score: every rank stops at the same step, with the
    single process's steps and best weights."""
    config, data = tiny_data(**EARLY_STOP)
    single, steps = train_weights(config, data, ranks=Ranks(), checkpoints=job / "early-single")
    assert single is not None
    for rank in (0, 1):
        early = load_file(job / f"early-rank{rank}.safetensors")
        assert early.pop("steps").tolist() == steps, rank
        _assert_close(early, single, WEIGHT_TOL, f"early stopping, rank {rank}")


def test_checkpoint_written_at_world_size_2_resumes_at_world_size_1(job, straight, tmp_path):
    """The run killed at step 8 (2 processes) left its step-5 checkpoint; one process resumes
    it (first step run again: 6) and ends where the uninterrupted single process ends."""
    copy = tmp_path / "killed"
    shutil.copytree(job / "killed", copy)
    config, data = tiny_data()
    resumed, steps = train_weights(config, data, ranks=Ranks(), checkpoints=copy)
    assert steps == list(range(6, 13))
    assert resumed is not None
    _assert_close(resumed, straight, WEIGHT_TOL, "resumed at world size 1")


def test_checkpoint_written_at_world_size_1_resumes_at_world_size_2(job, straight):
    for rank in (0, 1):
        resumed = load_file(job / f"resumed-rank{rank}.safetensors")
        assert resumed.pop("steps").tolist() == list(range(6, 13)), rank
        _assert_close(resumed, straight, WEIGHT_TOL, f"resumed at world size 2, rank {rank}")


@pytest.mark.parametrize("target", ["path", "uri"])
def test_torchrun_runs_metarec_train_and_rank_0_writes_the_artifact(
    synthetic_home, tmp_path, target
):
    """The contract the TrainJob relies on: `torchrun --nproc-per-node 2 -m metarec train`.

    ``--out`` a folder (the chart's TrainJob) or a URI (the pipeline's: rank 0 uploads the
    artifact, model card last; ``file://`` stands for the object store here).
    """
    source = synthetic_home.paths.training_sets / "synthetic.parquet"
    training_set = mark_validated(source, tmp_path / "ts" / "synthetic.parquet", result_id="r1")
    config = tmp_path / "train.yaml"
    small = {**TINY, "max_steps": 6, "scenarios": ["new_user"], "support_sizes": ["5"]}
    config.write_text(yaml.safe_dump(small))
    out = tmp_path / "artifact"
    torchrun = Path(sys.executable).with_name("torchrun")
    command = [str(torchrun), "--standalone", "--nproc-per-node", "2", "-m", "metarec", "train"]
    where = out.as_uri() if target == "uri" else str(out)
    command += ["--config", str(config), "--training-set", str(training_set), "--out", where]
    env = {**os.environ, "METAREC_HOME": str(tmp_path / "home"), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=300, check=False, env=env
    )
    assert result.returncode == 0, result.stdout + result.stderr
    card = json.loads((out / "model_card.json").read_text())
    assert card["training"]["steps"] == 6
    if target == "path":
        assert not out.with_name("artifact.checkpoints").exists()  # removed by rank 0 when done
    assert result.stdout.count("Artifact:") == 1  # only rank 0 reports
