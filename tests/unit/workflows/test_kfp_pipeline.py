"""The compiled retrain pipeline (KFP IR YAML), asserted by parsing it."""

import yaml
from metarec.compute import ComputeSpec, Toleration
from metarec.workflows.kfp_pipeline import PLATFORM_IMAGE, compile_pipeline

GPU = ComputeSpec(
    gpu_count=1,
    gpu_type="NVIDIA-H100-80GB-HBM3",
    node_selector={"pool": "training"},
    tolerations=[Toleration(key="dedicated", operator="Equal", value="gpu")],
)


def test_training_task_carries_accelerator_tolerations_node_selector_and_retries(tmp_path):
    documents = list(
        yaml.safe_load_all(compile_pipeline(compute=GPU, out=tmp_path / "p.yaml").read_text())
    )
    spec, platform = documents
    executors = spec["deploymentSpec"]["executors"]
    train = executors["exec-train-op"]["container"]
    assert train["resources"]["accelerator"] == {
        "count": "1",
        "resourceCount": "1",
        "resourceType": "nvidia.com/gpu",
        "type": "nvidia.com/gpu",
    }
    assert all(e["container"]["image"] == PLATFORM_IMAGE for e in executors.values())
    k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-train-op"]
    assert {(t["key"], t.get("value")) for t in k8s["tolerations"]} == {
        ("dedicated", "gpu"),
        ("nvidia.com/gpu", None),
    }
    assert k8s["nodeSelector"]["labels"] == {
        "pool": "training",
        "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3",
    }
    tasks = spec["root"]["dag"]["tasks"]
    assert tasks["train-op"]["retryPolicy"]["maxRetryCount"] == 1
    assert set(tasks) == {
        "training-set-op",
        "validate-op",
        "train-op",
        "evaluate-op",
        "gate-op",
        "register-op",
        "canary-op",
    }
    # The canary step takes the registered version and the training set it replays.
    canary_inputs = tasks["canary-op"]["inputs"]["parameters"]
    assert canary_inputs["version"]["taskOutputParameter"] == {
        "producerTask": "register-op",
        "outputParameterKey": "version",
    }
    # Only the training task asks for a GPU.
    assert [
        name
        for name, e in executors.items()
        if "accelerator" in e["container"].get("resources", {})
    ] == ["exec-train-op"]
