"""The compiled retrain pipeline (KFP IR YAML), asserted by parsing it.

What a real KFP backend needs from it: caching off on every task, the chart's Secrets as env on
every task (the kubernetes platform spec), the image of the compile options, and URIs under the
object-store root between the steps.
"""

import re

import pytest
import yaml
from metarec.compute import ComputeSpec, Toleration
from metarec.workflows.kfp_compute import KfpOptions, chart_secrets
from metarec.workflows.kfp_pipeline import compile_pipeline
from pydantic import ValidationError

GPU = ComputeSpec(
    gpu_count=1,
    gpu_type="NVIDIA-H100-80GB-HBM3",
    node_selector={"pool": "training"},
    tolerations=[Toleration(key="dedicated", operator="Equal", value="gpu")],
)
OPTIONS = KfpOptions(
    image="registry.example/acme/metarec:2.3.4",
    object_store_root="s3://acme-ml/metarec/",
    secrets=chart_secrets(database="acme-db", redis="acme-redis", object_store="acme-s3"),
    env={"AWS_ENDPOINT_URL": "http://minio.storage:9000"},
)
TASKS = {
    "training-set-op",
    "validate-op",
    "train-op",
    "evaluate-op",
    "gate-op",
    "register-op",
    "canary-op",
}


def _compile(tmp_path, *, compute=GPU, options=OPTIONS):
    path = compile_pipeline(compute=compute, options=options, out=tmp_path / "p.yaml")
    spec, platform = yaml.safe_load_all(path.read_text())
    return spec, platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


def test_training_task_carries_accelerator_tolerations_node_selector_and_retries(tmp_path):
    spec, k8s_executors = _compile(tmp_path)
    executors = spec["deploymentSpec"]["executors"]
    train = executors["exec-train-op"]["container"]
    assert train["resources"]["accelerator"] == {
        "count": "1",
        "resourceCount": "1",
        "resourceType": "nvidia.com/gpu",
        "type": "nvidia.com/gpu",
    }
    k8s = k8s_executors["exec-train-op"]
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
    assert set(tasks) == TASKS
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


def test_caching_is_off_on_every_task(tmp_path):
    spec, _ = _compile(tmp_path)
    tasks = spec["root"]["dag"]["tasks"]
    assert set(tasks) == TASKS
    cached = [name for name, task in tasks.items() if task["cachingOptions"].get("enableCache")]
    assert cached == [], f"cached on a recurring run, so it would never rerun: {cached}"


def test_every_task_reads_the_chart_secrets_as_env(tmp_path):
    spec, k8s_executors = _compile(tmp_path)
    executors = spec["deploymentSpec"]["executors"]
    assert set(executors) == {f"exec-{task}" for task in TASKS}
    expected = {
        ("acme-db", "registry-url", "METAREC_REGISTRY__DATABASE_URL"),
        ("acme-db", "feast-registry-url", "METAREC_FEAST__REGISTRY_URL"),
        ("acme-redis", "connection-string", "METAREC_FEAST__REDIS_CONNECTION_STRING"),
        ("acme-s3", "access-key-id", "AWS_ACCESS_KEY_ID"),
        ("acme-s3", "secret-access-key", "AWS_SECRET_ACCESS_KEY"),
    }
    for name in executors:
        secret_env = k8s_executors[name]["secretAsEnv"]
        found = {
            (s["secretNameParameter"]["runtimeValue"]["constant"], m["secretKey"], m["envVar"])
            for s in secret_env
            for m in s["keyToEnv"]
        }
        assert found == expected, name
        assert not any(s["optional"] for s in secret_env), name
        # Plain env of the options reaches the container, never a secret value.
        env = {e["name"]: e["value"] for e in executors[name]["container"]["env"]}
        assert env == {"AWS_ENDPOINT_URL": "http://minio.storage:9000"}, name


def test_the_chart_default_secret_names_and_workload_identity(tmp_path):
    options = KfpOptions(image="ghcr.io/metarec/metarec:9.9.9", object_store_root="s3://m")
    _, k8s_executors = _compile(tmp_path, options=options)
    names = {s["secretName"] for s in k8s_executors["exec-gate-op"]["secretAsEnv"]}
    # helm/metarec/values.yaml: externalDatabase, externalRedis; externalS3.existingSecret is
    # empty there (workload identity), so no S3 keys are read. No step calls the registry API:
    # none holds its token (controlPlane.api.tokenSecret).
    assert names == {"metarec-database", "metarec-redis"}


def test_every_task_runs_the_image_of_the_options(tmp_path):
    for image in ("registry.example/acme/metarec:2.3.4", "ghcr.io/x/metarec@sha256:" + "a" * 64):
        options = OPTIONS.model_copy(update={"image": image})
        spec, _ = _compile(tmp_path, options=options)
        images = {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()}
        assert images == {image}


def _resolve(value: dict, *, root: str, job: str) -> str:
    """What the backend substitutes into a runtime constant built from the pipeline inputs."""
    constant = value["runtimeValue"]["constant"]
    constant = constant.replace("{{$.pipeline_job_uuid}}", job)
    return re.sub(
        r"\{\{\$\.inputs\.parameters\['pipelinechannel--object_store_root'\]\}\}", root, constant
    )


def test_steps_hand_each_other_uris_under_the_object_store_root(tmp_path):
    spec, _ = _compile(tmp_path)
    parameters = spec["root"]["inputDefinitions"]["parameters"]
    assert parameters["object_store_root"]["defaultValue"] == "s3://acme-ml/metarec"
    tasks = spec["root"]["dag"]["tasks"]
    for task in ("training-set-op", "train-op"):
        channel = tasks[task]["inputs"]["parameters"]["pipelinechannel--object_store_root"]
        assert channel == {"componentInputParameter": "object_store_root"}
    run = "gs://other-bucket/x/pipelines/job-42"
    outs = {
        task: _resolve(
            tasks[task]["inputs"]["parameters"]["out"], root="gs://other-bucket/x", job="job-42"
        )
        for task in ("training-set-op", "train-op")
    }
    assert outs == {
        "training-set-op": f"{run}/training_set.parquet",
        "train-op": f"{run}/artifact",
    }
    # Downstream steps read what the upstream steps returned (the URIs), never a local path.
    for task, name, producer, key in (
        ("validate-op", "training_set", "training-set-op", "path"),
        ("train-op", "training_set", "training-set-op", "path"),
        ("evaluate-op", "artifact", "train-op", "Output"),
        ("gate-op", "artifact", "train-op", "Output"),
        ("register-op", "artifact", "train-op", "Output"),
        ("register-op", "decision", "gate-op", "Output"),
        ("canary-op", "training_set", "training-set-op", "path"),
    ):
        assert tasks[task]["inputs"]["parameters"][name]["taskOutputParameter"] == {
            "producerTask": producer,
            "outputParameterKey": key,
        }, (task, name)


def test_options_refuse_bad_secret_and_env_names():
    with pytest.raises(ValidationError):
        KfpOptions(image="x", object_store_root="s3://m", secrets=chart_secrets(redis="Bad_Name"))
    with pytest.raises(ValidationError, match="environment variable"):
        KfpOptions(image="x", object_store_root="s3://m", env={"1BAD": "v"})
