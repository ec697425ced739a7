"""Nodes × GPUs per node: the world size, the torchrun command line, one process of a spec."""

import pytest
from metarec.compute import ComputeSpec
from metarec.config import load_settings
from pydantic import ValidationError


@pytest.mark.parametrize(
    ("nodes", "gpus", "per_node", "world", "distributed"),
    [
        (1, 0, 1, 1, False),
        (1, 1, 1, 1, False),
        (1, 4, 4, 4, True),
        (2, 1, 1, 2, True),
        (3, 0, 1, 3, True),
    ],
)
def test_world_size_is_nodes_times_processes_per_node(nodes, gpus, per_node, world, distributed):
    spec = ComputeSpec(nodes=nodes, gpu_count=gpus)
    assert (spec.processes_per_node, spec.world_size) == (per_node, world)
    assert spec.distributed is distributed


def test_torchrun_runs_the_metarec_module_with_nodes_and_processes():
    spec = ComputeSpec(nodes=2, gpu_count=8)
    assert spec.torchrun_command(["train", "--device", "cuda"]) == [
        "torchrun",
        "--nnodes=2",
        "--nproc-per-node=8",
        "-m",
        "metarec",
        "train",
        "--device",
        "cuda",
    ]
    assert spec.resources()["limits"]["nvidia.com/gpu"] == "8", "GPUs per node, per pod"


def test_one_process_keeps_the_scheduling_and_takes_one_gpu():
    spec = ComputeSpec(nodes=4, gpu_count=8, gpu_type="NVIDIA-H100-80GB-HBM3", cpu_limit="32")
    one = spec.one_process()
    assert (one.nodes, one.gpu_count, one.cpu_limit) == (1, 1, "32")
    assert one.effective_node_selector() == spec.effective_node_selector()
    assert ComputeSpec(nodes=2).one_process().gpu_count == 0


def test_nodes_must_be_at_least_one_and_come_from_settings(monkeypatch, tmp_path):
    with pytest.raises(ValidationError, match="nodes"):
        ComputeSpec(nodes=0)
    monkeypatch.setenv("METAREC_TRAINING_COMPUTE__NODES", "2")
    assert load_settings(home=tmp_path).training_compute.nodes == 2
