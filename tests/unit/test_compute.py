from metarec.compute import ComputeSpec, Toleration
from metarec.config import load_settings


def test_gpu_is_a_limit_and_brings_its_toleration_and_model_selector():
    spec = ComputeSpec(gpu_count=2, gpu_type="NVIDIA-A100-SXM4-80GB", node_selector={"pool": "gpu"})
    resources = spec.resources()
    assert resources["limits"]["nvidia.com/gpu"] == "2"
    assert "nvidia.com/gpu" not in resources["requests"]
    assert spec.effective_node_selector() == {
        "pool": "gpu",
        "nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB",
    }
    assert [t.key for t in spec.effective_tolerations()] == ["nvidia.com/gpu"]


def test_cpu_spec_has_no_gpu_anything():
    spec = ComputeSpec(tolerations=[Toleration(key="spot", operator="Exists")])
    assert "nvidia.com/gpu" not in spec.resources()["limits"]
    assert [t.key for t in spec.effective_tolerations()] == ["spot"]
    assert spec.effective_node_selector() == {}


def test_compute_spec_comes_from_settings(monkeypatch, tmp_path):
    monkeypatch.setenv("METAREC_TRAINING_COMPUTE__GPU_COUNT", "1")
    assert load_settings(home=tmp_path).training_compute.gpu_count == 1
