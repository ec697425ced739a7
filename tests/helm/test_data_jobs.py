"""Data on the cluster: the ingest CronJob (and its one-shot install hook Job) and the
materialise CronJob run the `metarec data`/`features` commands with the platform's env."""

from __future__ import annotations

import kubernetes_validate
import pytest

DATA_KINDS = {("CronJob", "data-ingest"), ("CronJob", "data-materialize")}
ON = ("data.ingest.enabled=true", "data.materialize.enabled=true")


def _pod(doc):
    spec = doc["spec"]
    if doc["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    return spec["template"]["spec"]


def _steps(pod):
    """(name, command + args) of the init containers, then the containers, in run order."""
    return [
        (c["name"], [*c["command"], *c["args"]])
        for c in [*pod.get("initContainers", []), *pod["containers"]]
    ]


def test_data_jobs_are_off_by_default(default, chart):
    names = {d["metadata"]["name"] for d in default.docs}
    assert not {chart.name(component) for _, component in DATA_KINDS} & names
    assert chart.name("data-ingest-install") not in names


def test_gpu_production_ingests_its_tables_then_applies_the_features(gpu, chart):
    cronjob = gpu.get("CronJob", chart.name("data-ingest"))
    assert cronjob["spec"]["schedule"] == "0 0 * * *"
    assert cronjob["spec"]["timeZone"] == "Europe/Berlin"
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    assert _steps(_pod(cronjob)) == [
        (
            "ingest",
            [
                "metarec",
                *("data", "ingest", "--source", "table"),
                *("--schema", "s3://acme-ml-metarec/data/schema.yaml"),
            ],
        ),
        ("apply", ["metarec", "features", "apply"]),
    ]


def test_gpu_production_materialises_into_redis_before_the_retrain_run(gpu, chart):
    cronjob = gpu.get("CronJob", chart.name("data-materialize"))
    assert _steps(_pod(cronjob)) == [("materialize", ["metarec", "features", "materialize"])]
    assert cronjob["spec"]["schedule"] == "30 1 * * *"
    retrain = gpu.get("CronJob", chart.name("retrain"))
    assert retrain["spec"]["schedule"] == "30 2 * * *"
    assert retrain["spec"]["timeZone"] == cronjob["spec"]["timeZone"]


def test_data_containers_get_the_training_pods_env_volumes_and_account(gpu_single_node, chart):
    # The train template (one node: not a TrainJob): the training pod spec without the retrain's
    # deploy step (its own account and env), which the data pods must not get.
    gpu = gpu_single_node
    retrain = _pod(gpu.get("CronJob", chart.name("train")))
    expected_env = retrain["containers"][0]["env"]
    for component in ("data-ingest", "data-materialize"):
        pod = _pod(gpu.get("CronJob", chart.name(component)))
        assert pod["serviceAccountName"] == retrain["serviceAccountName"], component
        assert pod["automountServiceAccountToken"] is False, component
        assert pod["restartPolicy"] == "Never", component
        assert pod["volumes"] == retrain["volumes"], component
        for container in [*pod.get("initContainers", []), *pod["containers"]]:
            where = f"{component}/{container['name']}"
            assert container["env"] == expected_env, where
            assert container["image"] == retrain["containers"][0]["image"], where
            assert container["volumeMounts"] == retrain["containers"][0]["volumeMounts"], where
            assert container["resources"]["limits"] == {"cpu": "4", "memory": "16Gi"}, where


def test_the_install_hook_runs_the_ingest_pod_once(chart):
    m = chart.render(sets=("data.ingest.onInstall=true",))
    job = m.get("Job", chart.name("data-ingest-install"))
    annotations = job["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "post-install"
    assert annotations["helm.sh/hook-delete-policy"] == "before-hook-creation"
    assert job["spec"]["activeDeadlineSeconds"] > 0 and job["spec"]["backoffLimit"] == 2
    assert _steps(_pod(job)) == [
        ("ingest", ["metarec", "data", "ingest", "--source", "ml-100k"]),
        ("apply", ["metarec", "features", "apply"]),
    ]
    assert chart.name("data-ingest") not in m.names("CronJob")
    both = chart.render(sets=("data.ingest.onInstall=true", *ON))
    cronjob = both.get("CronJob", chart.name("data-ingest"))
    assert _pod(cronjob) == _pod(both.get("Job", chart.name("data-ingest-install")))


def test_movielens_options_become_ingest_arguments(chart):
    sets = (
        *ON,
        "data.ingest.source=ml-1m",
        "data.ingest.path=s3://bucket/raw/ml-1m.zip",
        "data.ingest.checksum=sha256:ab12",
        "data.ingest.extraArgs={--seed=3}",
    )
    pod = _pod(chart.render(sets=sets).get("CronJob", chart.name("data-ingest")))
    assert pod["initContainers"][0]["args"] == [
        *("data", "ingest", "--source", "ml-1m", "--path", "s3://bucket/raw/ml-1m.zip"),
        *("--checksum", "sha256:ab12", "--seed=3"),
    ]


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (("data.ingest.source=table",), "data.ingest.schema is required"),
        (("data.ingest.schema=s3://b/schema.yaml",), "data.ingest.schema is only read"),
        (("data.ingest.path=/a.zip", "data.ingest.url=http://x/a.zip"), "only one of them"),
        (("data.ingest.source=synthetic", "data.ingest.path=/a.zip"), "MovieLens sources"),
        (("data.ingest.source=ml-10m",), "source"),
        (("data.ingest.checksum=crc:1",), "checksum"),
    ],
)
def test_contradictory_ingest_values_fail_naming_the_values_path(chart, sets, message):
    with pytest.raises(chart.RenderError, match=message):
        chart.render(sets=(*ON, *sets))


@pytest.mark.parametrize("version", ["1.30", "1.33"])
def test_the_data_workloads_validate_strictly(gpu, chart, version):
    docs = [
        *(gpu.get("CronJob", chart.name(c)) for _, c in DATA_KINDS),
        chart.render(chart.gpu_values, sets=("data.ingest.onInstall=true",)).get(
            "Job", chart.name("data-ingest-install")
        ),
    ]
    for doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)
