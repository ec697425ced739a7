"""The compiled tuning pipeline (KFP IR YAML): study → ParallelFor of workers → gate the best."""

import json

import pytest
import yaml
from metarec.compute import ComputeSpec, Toleration
from metarec.workflows.kfp_compute import KfpOptions, chart_secrets
from metarec.workflows.kfp_tuning import compile_tuning_pipeline

# 2 nodes × 4 GPUs: a worker runs one training process, so it gets one node and one GPU.
COMPUTE = ComputeSpec(
    nodes=2,
    gpu_count=4,
    gpu_type="NVIDIA-H100-80GB-HBM3",
    node_selector={"pool": "training"},
    tolerations=[Toleration(key="dedicated", operator="Equal", value="gpu")],
)
OPTIONS = KfpOptions(
    image="registry.example/acme/metarec:2.3.4",
    object_store_root="s3://acme-ml/metarec",
    secrets=chart_secrets(database="acme-db"),
)


def _compile(tmp_path, *, workers=3, compute=COMPUTE):
    path = compile_tuning_pipeline(
        compute=compute, options=OPTIONS, out=tmp_path / "tune.yaml", workers=workers
    )
    spec, platform = yaml.safe_load_all(path.read_text())
    return spec, platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


def _loop(spec):
    loops = {
        name: task
        for name, task in spec["root"]["dag"]["tasks"].items()
        if "parameterIterator" in task
    }
    assert len(loops) == 1, f"one ParallelFor, got {sorted(loops)}"
    ((name, task),) = loops.items()
    return name, task


def test_workers_fan_out_in_one_parallel_for_after_the_study_is_created(tmp_path):
    spec, _ = _compile(tmp_path, workers=3)
    name, loop = _loop(spec)
    assert json.loads(loop["parameterIterator"]["items"]["raw"]) == [0, 1, 2]
    assert loop["iteratorPolicy"]["parallelismLimit"] == 3, "all workers at once"
    assert loop["dependentTasks"] == ["create-study-op"]
    inner = spec["components"][loop["componentRef"]["name"]]["dag"]["tasks"]
    assert set(inner) == {"tune-worker-op"}
    study = inner["tune-worker-op"]["inputs"]["parameters"]["study"]
    assert study == {"componentInputParameter": "pipelinechannel--create-study-op-Output"}
    best = spec["root"]["dag"]["tasks"]["gate-best-op"]
    assert name in best["dependentTasks"], "the best is gated after every worker finished"


def test_each_worker_gets_one_process_of_the_training_compute_spec(tmp_path):
    spec, k8s = _compile(tmp_path)
    for task in ("tune-worker-op", "gate-best-op"):
        container = spec["deploymentSpec"]["executors"][f"exec-{task}"]["container"]
        resources = container["resources"]
        assert resources["accelerator"]["resourceType"] == "nvidia.com/gpu"
        assert resources["accelerator"]["resourceCount"] == "1", "one process: one GPU"
        assert (resources["resourceCpuLimit"], resources["resourceMemoryLimit"]) == ("4", "16Gi")
        assert container["image"] == OPTIONS.image
        executor = k8s[f"exec-{task}"]
        assert {(t["key"], t.get("value")) for t in executor["tolerations"]} == {
            ("dedicated", "gpu"),
            ("nvidia.com/gpu", None),
        }
        assert executor["nodeSelector"]["labels"] == {
            "pool": "training",
            "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3",
        }
        assert executor["secretAsEnv"][0]["secretName"] == "acme-db"
    study = spec["deploymentSpec"]["executors"]["exec-create-study-op"]["container"]
    assert "accelerator" not in study.get("resources", {}), "creating the study needs no GPU"


def test_a_cpu_spec_gives_workers_no_accelerator(tmp_path):
    spec, _ = _compile(tmp_path, compute=ComputeSpec(), workers=1)
    worker = spec["deploymentSpec"]["executors"]["exec-tune-worker-op"]["container"]
    assert "accelerator" not in worker.get("resources", {})
    _, loop = _loop(spec)
    assert json.loads(loop["parameterIterator"]["items"]["raw"]) == [0]


def test_the_steps_call_the_tuning_use_cases(tmp_path):
    spec, _ = _compile(tmp_path)
    executors = spec["deploymentSpec"]["executors"]
    sources = {
        name: "\n".join(executors[f"exec-{name}"]["container"]["command"])
        for name in ("create-study-op", "tune-worker-op", "gate-best-op")
    }
    assert "from metarec.ops.tuning import create_study" in sources["create-study-op"]
    assert "from metarec.ops.tuning import join_study" in sources["tune-worker-op"]
    assert "from metarec.ops.tuning import gate_study_best" in sources["gate-best-op"]
    for source in sources.values():
        assert "subprocess" not in source, "steps call the use cases, not the CLI"


def test_zero_workers_is_refused(tmp_path):
    with pytest.raises(ValueError, match="workers"):
        _compile(tmp_path, workers=0)


def test_a_multi_node_spec_trains_through_a_trainjob_launcher(tmp_path):
    from metarec.workflows.kfp_pipeline import compile_pipeline

    path = compile_pipeline(compute=COMPUTE, options=OPTIONS, out=tmp_path / "retrain.yaml")
    tasks = next(yaml.safe_load_all(path.read_text()))["root"]["dag"]["tasks"]
    assert "train-distributed-op" in tasks and "train-op" not in tasks
