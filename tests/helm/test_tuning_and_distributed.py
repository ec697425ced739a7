"""Distributed training and hyper-parameter search on the cluster.

The chart's TrainJob (Kubeflow Trainer v2) or PyTorchJob (training operator v1) and its Katib
Experiment render from the values and validate against the upstream typed models
(`kubeflow-trainer-api`, `kubeflow-katib-api`: tests/helm/schemas/kubeflow/SOURCE.md) or a schema
written from the upstream CRD (tests/helm/schemas/training-operator/). The typed models drop
unknown fields silently, so a field lost in the model's round trip fails the test too.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pydantic
import pytest
import yaml
from kubeflow_katib_api.models import V1beta1Experiment
from kubeflow_trainer_api.models import TrainerV1alpha1TrainJob
from metarec.compute import ComputeSpec
from metarec.tuning.space import tunable_names
from metarec.tuning.spec import load_spec

GPU = "nvidia.com/gpu"
DISTRIBUTED_KINDS = ("TrainJob", "PyTorchJob")
PYTORCHJOB_SCHEMA = (
    Path(__file__).parent / "schemas" / "training-operator" / "pytorchjob.schema.json"
)


def _lost_fields(rendered: Any, round_trip: Any, path: str = "") -> list[str]:
    """Paths of ``rendered`` that the typed model's ``to_dict()`` no longer has."""
    if isinstance(rendered, dict):
        lost = []
        for key, value in rendered.items():
            if not isinstance(round_trip, dict) or key not in round_trip:
                lost.append(f"{path}.{key}")
            else:
                lost += _lost_fields(value, round_trip[key], f"{path}.{key}")
        return lost
    if isinstance(rendered, list):
        return [
            lost
            for i, (a, b) in enumerate(zip(rendered, round_trip, strict=False))
            for lost in _lost_fields(a, b, f"{path}[{i}]")
        ]
    return []


def _validate_trainjob(doc: dict[str, Any]) -> None:
    model = TrainerV1alpha1TrainJob.from_dict(copy.deepcopy(doc))
    lost = _lost_fields(doc, model.to_dict())
    assert not lost, f"fields the TrainJob API does not have: {lost}"


def _validate_experiment(doc: dict[str, Any]) -> None:
    model = V1beta1Experiment.from_dict(copy.deepcopy(doc))
    lost = _lost_fields(doc, model.to_dict())
    assert not lost, f"fields the Experiment API does not have: {lost}"


def _compute(values: dict[str, Any]) -> ComputeSpec:
    c = values["training"]["compute"]
    return ComputeSpec(
        nodes=c.get("nodes", 1),
        gpu_count=c["gpuCount"],
        gpu_resource=c["gpuResource"],
        gpu_type=c.get("gpuType") or None,
        tolerations=c.get("tolerations", []),
        node_selector=c.get("nodeSelector", {}),
    )


def _gpu_values(chart) -> dict[str, Any]:
    return yaml.safe_load(Path(chart.gpu_values).read_text())


def _train_args(values: dict[str, Any]) -> list[str]:
    return ["train", "--device", "cuda", "--training-set", values["training"]["trainingSet"]]


# ------------------------------------------------------------------ TrainJob


def test_gpu_production_renders_a_trainjob_of_nodes_times_gpus(gpu, chart):
    values = _gpu_values(chart)
    compute = _compute(values)
    assert compute.nodes == 2 and compute.gpu_count == 1, "2 nodes × 1 H100 in production"
    (job,) = gpu.of_kind("TrainJob")
    _validate_trainjob(job)
    assert job["spec"]["runtimeRef"]["name"] == "torch-distributed"
    trainer = job["spec"]["trainer"]
    assert trainer["numNodes"] == compute.nodes
    assert trainer["numProcPerNode"] == compute.gpu_count
    assert trainer["resourcesPerNode"]["limits"][GPU] == str(compute.gpu_count)
    assert GPU not in trainer["resourcesPerNode"]["requests"]
    assert trainer["command"] == compute.torchrun_command(_train_args(values))
    assert trainer["command"][:3] == ["torchrun", "--nnodes=2", "--nproc-per-node=1"]
    env = {e["name"] for e in trainer["env"]}
    assert {"METAREC_HOME", "METAREC_REGISTRY__DATABASE_URL", "METAREC_FEAST__OFFLINE_ROOT"} <= env


def test_the_trainjob_pods_get_the_training_pod_settings(gpu, chart):
    compute = _compute(_gpu_values(chart))
    (job,) = gpu.of_kind("TrainJob")
    (patch,) = job["spec"]["runtimePatches"]
    (node,) = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
    assert node["name"] == "node"
    pod = node["template"]["spec"]["template"]["spec"]
    retrain = gpu.get("CronJob", chart.name("retrain"))["spec"]["jobTemplate"]["spec"]
    retrain_pod = retrain["template"]["spec"]
    assert pod["serviceAccountName"] == chart.name()
    assert pod["securityContext"] == retrain_pod["securityContext"]
    assert pod["volumes"] == retrain_pod["volumes"]
    assert pod["nodeSelector"] == compute.effective_node_selector()
    assert pod["tolerations"] == [t.to_kubernetes() for t in compute.effective_tolerations()]
    (container,) = pod["containers"]
    assert container["name"] == "node"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["volumeMounts"] == retrain_pod["containers"][0]["volumeMounts"]


def test_the_typed_trainjob_model_catches_a_wrong_type_and_an_unknown_field(gpu):
    (job,) = gpu.of_kind("TrainJob")
    wrong_type = copy.deepcopy(job)
    wrong_type["spec"]["trainer"]["numNodes"] = "two"
    with pytest.raises(pydantic.ValidationError, match="numNodes"):
        _validate_trainjob(wrong_type)
    misspelt = copy.deepcopy(job)
    misspelt["spec"]["trainer"]["numNode"] = 2
    with pytest.raises(AssertionError, match=r"\.spec\.trainer\.numNode"):
        _validate_trainjob(misspelt)


@pytest.mark.parametrize(
    ("nodes", "gpus", "expected"),
    [(1, 2, (1, 2)), (4, 8, (4, 8)), (3, 0, (3, 1))],
)
def test_the_trainjob_asks_nodes_times_gpus_per_node(chart, nodes, gpus, expected):
    sets = [f"training.compute.nodes={nodes}", f"training.compute.gpuCount={gpus}"]
    if not gpus:
        sets.append("training.device=cpu")
    (job,) = chart.render(chart.gpu_values, sets=sets).of_kind("TrainJob")
    _validate_trainjob(job)
    trainer = job["spec"]["trainer"]
    assert (trainer["numNodes"], trainer["numProcPerNode"]) == expected
    assert trainer["resourcesPerNode"]["limits"].get(GPU) == (str(gpus) if gpus else None)
    spec = ComputeSpec(nodes=nodes, gpu_count=gpus)
    assert trainer["command"][:5] == spec.torchrun_command([])


def test_one_gpu_on_one_node_renders_no_distributed_job(chart, default):
    for m in (default, chart.render(chart.gpu_values, sets=["training.compute.nodes=1"])):
        assert not [d for d in m.docs if d["kind"] in DISTRIBUTED_KINDS]
    assert not default.of_kind("Experiment"), "Katib is off by default"
    forced = chart.render(
        chart.gpu_values,
        sets=["training.compute.nodes=1", "training.distributed.enabled=true"],
    )
    (job,) = forced.of_kind("TrainJob")
    assert job["spec"]["trainer"]["numNodes"] == 1


def test_a_distributed_job_replaces_the_training_job_template(gpu, default, chart):
    assert chart.name("train") in default.names("CronJob")
    assert chart.name("train") not in gpu.names("CronJob")


# ------------------------------------------------------------------ PyTorchJob


def _pytorchjob_manifests(chart, *, nodes: int = 3, gpus: int = 2):
    return chart.render(
        chart.gpu_values,
        sets=[
            "training.distributed.operator=training-operator",
            f"training.compute.nodes={nodes}",
            f"training.compute.gpuCount={gpus}",
        ],
    )


def test_the_operator_switch_renders_a_pytorchjob(chart):
    m = _pytorchjob_manifests(chart, nodes=3, gpus=2)
    assert not m.of_kind("TrainJob")
    (job,) = m.of_kind("PyTorchJob")
    jsonschema.validate(job, json.loads(PYTORCHJOB_SCHEMA.read_text()))
    specs = job["spec"]["pytorchReplicaSpecs"]
    assert (specs["Master"]["replicas"], specs["Worker"]["replicas"]) == (1, 2)
    assert job["spec"]["nprocPerNode"] == "2"
    assert job["spec"]["runPolicy"]["suspend"] is True
    values = _gpu_values(chart)
    command = ComputeSpec(nodes=3, gpu_count=2).torchrun_command(_train_args(values))
    for role in ("Master", "Worker"):
        template = specs[role]["template"]
        (container,) = template["spec"]["containers"]
        assert container["name"] == "pytorch"
        assert container["command"] == command
        assert container["resources"]["limits"][GPU] == "2"
        for version in chart.kubernetes_versions:
            pod_template = {
                "apiVersion": "v1",
                "kind": "PodTemplate",
                "metadata": {"name": f"pytorch-{role.lower()}"},
                "template": template,
            }
            kubernetes_validate.validate(pod_template, version, strict=True)


def test_a_single_node_pytorchjob_has_no_worker(chart):
    (job,) = _pytorchjob_manifests(chart, nodes=1, gpus=4).of_kind("PyTorchJob")
    assert set(job["spec"]["pytorchReplicaSpecs"]) == {"Master"}
    jsonschema.validate(job, json.loads(PYTORCHJOB_SCHEMA.read_text()))


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda j: j["spec"]["pytorchReplicaSpecs"]["Master"].update(replicas=2), "1 was expected"),
        (lambda j: j["spec"]["runPolicy"].update(cleanPodPolicys="None"), "cleanPodPolicys"),
        (lambda j: j["spec"].update(nprocPerNode=2), "not of type 'string'"),
        (
            lambda j: j["spec"]["pytorchReplicaSpecs"].update(Launcher={"template": {}}),
            "Launcher",
        ),
        (
            lambda j: j["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][
                0
            ].update(name="train"),
            "does not contain",
        ),
    ],
)
def test_the_pytorchjob_schema_rejects_what_the_operator_rejects(chart, change, expected):
    (job,) = _pytorchjob_manifests(chart).of_kind("PyTorchJob")
    bad = copy.deepcopy(job)
    change(bad)
    with pytest.raises(jsonschema.ValidationError, match=expected):
        jsonschema.validate(bad, json.loads(PYTORCHJOB_SCHEMA.read_text()))


def test_an_unknown_operator_fails_the_values_schema(chart):
    with pytest.raises(chart.RenderError, match="operator"):
        chart.render(sets=["training.distributed.operator=mpi"])


# ------------------------------------------------------------------ Katib Experiment


def _trial(experiment: dict[str, Any]) -> dict[str, Any]:
    return experiment["spec"]["trialTemplate"]


def _trial_container(experiment: dict[str, Any]) -> dict[str, Any]:
    (container,) = _trial(experiment)["trialSpec"]["spec"]["template"]["spec"]["containers"]
    return container


def test_gpu_production_renders_a_katib_experiment_that_validates(gpu, chart):
    (experiment,) = gpu.of_kind("Experiment")
    _validate_experiment(experiment)
    spec = experiment["spec"]
    assert spec["objective"] == {"type": "minimize", "objectiveMetricName": "objective"}
    assert spec["algorithm"]["algorithmName"] == "tpe"
    assert spec["metricsCollectorSpec"]["collector"]["kind"] == "StdOut"
    assert (spec["parallelTrialCount"], spec["maxTrialCount"]) == (4, 20)
    assert _trial(experiment)["primaryContainerName"] == _trial_container(experiment)["name"]
    job = {**_trial(experiment)["trialSpec"], "metadata": {"name": "trial"}}
    for version in chart.kubernetes_versions:
        kubernetes_validate.validate(job, version, strict=True)


def test_the_katib_trial_names_only_parameters_of_the_experiment(gpu):
    (experiment,) = gpu.of_kind("Experiment")
    parameters = {p["name"] for p in experiment["spec"]["parameters"]}
    trial_parameters = _trial(experiment)["trialParameters"]
    assert {t["reference"] for t in trial_parameters} == parameters
    command = _trial_container(experiment)["command"]
    assert command[:3] == ["metarec", "tune", "trial"]
    passed = [command[i + 1] for i, arg in enumerate(command) if arg == "--param"]
    names = {t["name"] for t in trial_parameters}
    assert {p.split("=", 1)[0] for p in passed} == parameters
    for assignment in passed:
        name, value = assignment.split("=", 1)
        assert value == f"${{trialParameters.{name}}}" and name in names
    assert parameters <= set(tunable_names()), "TrainingConfig fields or the width parameters"


def _katib_parameter(name: str, parameter: Any) -> dict[str, Any]:
    """A search-space parameter of metarec.tuning as the Katib parameter it should be."""
    if parameter.type == "categorical":
        choices = [str(c).lower() if isinstance(c, bool) else str(c) for c in parameter.choices]
        return {"name": name, "parameterType": "categorical", "feasibleSpace": {"list": choices}}
    space: dict[str, Any] = {"min": parameter.low, "max": parameter.high}
    if parameter.log:
        space["distribution"] = "logUniform"
    kind = "double" if parameter.type == "float" else "int"
    return {"name": name, "parameterType": kind, "feasibleSpace": space}


def _numeric(parameter: dict[str, Any]) -> dict[str, Any]:
    space = {
        key: float(value) if key in ("min", "max") else value
        for key, value in parameter["feasibleSpace"].items()
    }
    return {**parameter, "feasibleSpace": space}


def test_the_katib_parameters_are_the_shipped_search_space(gpu):
    """`tune trial` parses every --param against its space: a name or value outside it fails."""
    (experiment,) = gpu.of_kind("Experiment")
    expected = [_numeric(_katib_parameter(n, p)) for n, p in load_spec().parameters.items()]
    rendered = [_numeric(p) for p in experiment["spec"]["parameters"]]
    assert sorted(rendered, key=lambda p: p["name"]) == sorted(expected, key=lambda p: p["name"])


def test_a_katib_trial_is_one_pod_with_one_gpu_of_the_training_compute(chart):
    m = chart.render(chart.gpu_values, sets=["training.compute.gpuCount=8"])
    (experiment,) = m.of_kind("Experiment")
    container = _trial_container(experiment)
    assert container["resources"]["limits"][GPU] == "1", "a trial is one process: one GPU"
    pod = _trial(experiment)["trialSpec"]["spec"]["template"]["spec"]
    assert {"key": GPU, "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert pod["nodeSelector"]["nvidia.com/gpu.product"] == "NVIDIA-H100-80GB-HBM3"
    cpu = chart.render(sets=["tuning.katib.enabled=true"])
    (experiment,) = cpu.of_kind("Experiment")
    _validate_experiment(experiment)
    assert GPU not in _trial_container(experiment)["resources"]["limits"]


def test_katib_objective_goal_and_early_stopping_come_from_values(chart):
    m = chart.render(
        sets=[
            "tuning.katib.enabled=true",
            "tuning.katib.objective.type=maximize",
            "tuning.katib.objective.goal=0.35",
            "tuning.katib.earlyStopping.enabled=true",
            "tuning.katib.earlyStopping.settings.min_trials_required=3",
            "tuning.katib.algorithm.settings.n_EI_candidates=24",
        ]
    )
    (experiment,) = m.of_kind("Experiment")
    _validate_experiment(experiment)
    spec = experiment["spec"]
    assert spec["objective"]["type"] == "maximize" and spec["objective"]["goal"] == 0.35
    assert spec["earlyStopping"] == {
        "algorithmName": "medianstop",
        "algorithmSettings": [{"name": "min_trials_required", "value": "3"}],
    }
    assert spec["algorithm"]["algorithmSettings"] == [{"name": "n_EI_candidates", "value": "24"}]


def test_the_typed_experiment_model_catches_a_wrong_type_and_an_unknown_field(gpu):
    (experiment,) = gpu.of_kind("Experiment")
    wrong_type = copy.deepcopy(experiment)
    wrong_type["spec"]["maxTrialCount"] = "many"
    with pytest.raises(pydantic.ValidationError, match="maxTrialCount"):
        _validate_experiment(wrong_type)
    misspelt = copy.deepcopy(experiment)
    misspelt["spec"]["trialTemplate"]["primaryContainer"] = "trial"
    with pytest.raises(AssertionError, match="primaryContainer"):
        _validate_experiment(misspelt)


# ------------------------------------------------------------------ network policies


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector["matchLabels"].items())


def test_the_nodes_of_a_distributed_run_reach_each_other(gpu, chart):
    (job,) = gpu.of_kind("TrainJob")
    (node,) = job["spec"]["runtimePatches"][0]["trainingRuntimeSpec"]["template"]["spec"][
        "replicatedJobs"
    ]
    labels = node["template"]["spec"]["template"]["metadata"]["labels"]
    policy = gpu.get("NetworkPolicy", chart.name("train-distributed"))["spec"]
    assert policy["policyTypes"] == ["Ingress"]
    assert _selects(policy["podSelector"], labels)
    (rule,) = policy["ingress"]
    assert "ports" not in rule, "torchrun and NCCL choose their ports"
    assert [_selects(peer["podSelector"], labels) for peer in rule["from"]] == [True]
    retrain = gpu.get("CronJob", chart.name("retrain"))["spec"]["jobTemplate"]["spec"]["template"]
    assert not _selects(rule["from"][0]["podSelector"], retrain["metadata"]["labels"])
    single = chart.render(chart.gpu_values, sets=["training.compute.nodes=1"])
    assert chart.name("train-distributed") not in single.names("NetworkPolicy")


def test_katib_trials_may_report_to_katibs_db_manager(gpu, chart):
    (experiment,) = gpu.of_kind("Experiment")
    labels = _trial(experiment)["trialSpec"]["spec"]["template"]["metadata"]["labels"]
    policy = gpu.get("NetworkPolicy", chart.name("tune-katib"))["spec"]
    assert _selects(policy["podSelector"], labels)
    ((peer,), ports) = (policy["egress"][0]["to"], policy["egress"][0]["ports"])
    assert peer["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "kubeflow"}
    assert ports == [{"port": 6789, "protocol": "TCP"}]
    for version in chart.kubernetes_versions:
        for name in ("tune-katib", "train-distributed"):
            kubernetes_validate.validate(
                gpu.get("NetworkPolicy", chart.name(name)), version, strict=True
            )
