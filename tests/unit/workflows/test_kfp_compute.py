"""The compute spec in a compiled KFP pipeline, asserted on the parsed YAML."""

import yaml
from kfp import compiler, dsl
from metarec.compute import ComputeSpec, Toleration
from metarec.workflows.kfp_compute import apply_compute


@dsl.component(base_image="python:3.11-slim")
def _train() -> str:
    return "trained"


def _compile(compute: ComputeSpec, tmp_path) -> list[dict]:
    @dsl.pipeline(name="compute-check")
    def pipeline():
        apply_compute(_train(), compute)

    path = tmp_path / "pipeline.yaml"
    compiler.Compiler().compile(pipeline, str(path))
    return list(yaml.safe_load_all(path.read_text()))


def test_accelerator_tolerations_and_node_selector_are_compiled(tmp_path):
    spec = ComputeSpec(
        gpu_count=2,
        gpu_type="NVIDIA-H100-80GB-HBM3",
        cpu_limit="8",
        memory_limit="32Gi",
        tolerations=[Toleration(key="dedicated", operator="Equal", value="training")],
    )
    documents = _compile(spec, tmp_path)
    executor = next(iter(documents[0]["deploymentSpec"]["executors"].values()))
    resources = executor["container"]["resources"]
    assert resources["accelerator"]["resourceType"] == "nvidia.com/gpu"
    assert int(resources["accelerator"]["resourceCount"]) == 2
    assert resources["resourceMemoryLimit"] == "32Gi" and resources["resourceCpuLimit"] == "8"
    platform = next(
        iter(documents[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"].values())
    )
    keys = {t["key"] for t in platform["tolerations"]}
    assert keys == {"dedicated", "nvidia.com/gpu"}
    assert platform["nodeSelector"]["labels"] == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}


def test_cpu_training_asks_for_no_accelerator(tmp_path):
    documents = _compile(ComputeSpec(), tmp_path)
    executor = next(iter(documents[0]["deploymentSpec"]["executors"].values()))
    assert "accelerator" not in executor["container"].get("resources", {})
