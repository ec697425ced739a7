"""The loop on the kubelet-less cluster: the chart's ingest Job, materialise CronJob, retrain
CronJob and serving Deployment run with their rendered env against PostgreSQL, Redis and the S3
server.

Every pod has its own empty home (an ``emptyDir``), so nothing travels between them through a
shared folder: the team's schema and tables are on the object store (``--schema s3://…``), the
ingest pod publishes the snapshot to ``externalS3.offlineRoot``, the materialise pod reads the
Feast sources there, the retrain pod fetches the snapshot from there to build its training set,
validates it against the reference profile stored there, trains and registers the version with
its artifact on S3, and the serving pod loads that version from S3.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pandas as pd
import pytest
import yaml

# Loaded from its file by tests/cluster/conftest.py (tests/ is not a package).
workloads = sys.modules["metarec_tests_cluster_workloads"]

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _schema_on_s3(s3, tmp_path: Path) -> tuple[str, pd.DataFrame]:
    """A generated catalogue uploaded to S3 with its schema YAML beside it: the interactions
    named by an ``s3://`` URI, the users and items by paths relative to the YAML."""
    out = tmp_path / "catalogue"
    subprocess.run(
        [
            *(str(Path(sys.prefix) / "bin" / "metarec"), "data", "generate", "--out", str(out)),
            *("--users", "120", "--items", "80", "--format", "parquet"),
            *("--label", "rating", "--ids", "int"),
        ],
        check=True,
        capture_output=True,
    )
    fs = s3.filesystem()
    schema = yaml.safe_load((out / "schema.yaml").read_text())
    for table in ("interactions", "users", "items"):
        fs.put_file(str(out / schema[table]["path"]), s3.url("raw", f"{table}.parquet"))
        schema[table]["path"] = f"{table}.parquet"
    schema["interactions"]["path"] = s3.url("raw", "interactions.parquet")
    fs.pipe_file(s3.url("raw", "schema.yaml"), yaml.safe_dump(schema).encode())
    return s3.url("raw", "schema.yaml"), pd.read_parquet(out / "users.parquet")


def _retrain_env(tmp_path: Path, *, model: str) -> list[dict[str, str]]:
    """``extraEnv`` of the test release: a model of its own, a small training config and a
    permissive gate (the data are 120 generated users: the loop is under test, not the model)."""
    from metarec.testing.serving import PERMISSIVE_POLICY_WITH_RANKING, SMALL_CONFIG

    config = tmp_path / "training.yaml"
    config.write_text(yaml.safe_dump(SMALL_CONFIG))
    policy = tmp_path / "policy.yaml"
    policy.write_text(PERMISSIVE_POLICY_WITH_RANKING)
    return [
        {"name": "METAREC_REGISTRY__MODEL_NAME", "value": model},
        {"name": "METAREC_WORKFLOWS__TRAINING_CONFIG", "value": str(config)},
        {"name": "METAREC_REGISTRY__GATE_POLICY", "value": str(policy)},
    ]


def _succeeded(steps, names):
    assert [s.name for s in steps] == names, [(s.name, s.output[-2000:]) for s in steps]
    for step in steps:
        assert step.returncode == 0, f"{step.name} exited {step.returncode}:\n{step.output[-3000:]}"


def _published(s3, offline: str) -> dict:
    """The manifest of the snapshot ``<offline>/CURRENT`` names, each file checked on S3."""
    fs = s3.filesystem()
    snapshot_id = fs.cat_file(f"{offline}/CURRENT").decode().strip()
    manifest = json.loads(fs.cat_file(f"{offline}/{snapshot_id}/manifest.json"))
    assert manifest["snapshot_id"] == snapshot_id
    for name, sha256 in manifest["file_sha256"].items():
        assert hashlib.sha256(fs.cat_file(f"{offline}/{snapshot_id}/{name}")).hexdigest() == sha256
    return manifest


def _online_settings(cluster, home: Path):
    """Settings that read the online store as the serving pods would (the rendered env's)."""
    from metarec.config import load_settings

    return load_settings(
        home=home,
        feast={
            "environment": "cluster",
            "project": cluster.project,
            "repo_path": cluster.values["feastConfig"]["repoPath"],
            "registry_url": cluster.secrets["metarec-database"]["feast-registry-url"],
            "redis_connection_string": cluster.secrets["metarec-redis"]["connection-string"],
        },
    )


def test_ingest_materialise_retrain_then_serving_each_in_its_own_pod_through_the_object_store(
    cluster, s3, tmp_path
):
    from metarec.features.store import online_features, open_store

    schema, users = _schema_on_s3(s3, tmp_path)
    offline = s3.url("offline")
    model = f"cluster-{uuid.uuid4().hex[:10]}"  # other tests share the registry database
    manifests = cluster.render(
        extraEnv=_retrain_env(tmp_path, model=model),
        externalS3={"offlineRoot": offline},
        data={
            "ingest": {"onInstall": True, "source": "table", "schema": schema},
            "materialize": {"enabled": True},
        },
    )
    pods = tmp_path / "pods"

    steps = cluster.run(manifests, "Job", "data-ingest-install", home=pods / "ingest")
    _succeeded(steps, ["ingest", "apply"])
    manifest = _published(s3, offline)
    assert manifest["row_counts"]["users"] == len(users)
    assert manifest["metadata"]["label_kind"] == "rating"

    steps = cluster.run(manifests, "CronJob", "data-materialize", home=pods / "materialize")
    _succeeded(steps, ["materialize"])
    store = open_store(_online_settings(cluster, tmp_path / "reader"))
    for _, user in users.head(3).iterrows():
        values = online_features(store, user_id=int(user["customer_id"]))
        assert values["country"] == user["country"]
        assert values["age"] == user["age"]

    # The operator's one-time step in a pod of the retrain's env: accept a reference profile
    # (it lands on the object store, beside the snapshots, for every later retrain pod).
    first = {"training-set": ["features", "training-set"], "profile": ["features", "profile"]}
    operator = pods / "operator"
    steps = cluster.run(manifests, "CronJob", "retrain", home=operator, commands=first)
    _succeeded(steps, list(first))
    training_set = operator / "training_sets" / f"{manifest['snapshot_id']}.parquet"
    built = json.loads(training_set.with_suffix(".manifest.json").read_text())
    assert built["snapshot_id"] == manifest["snapshot_id"]
    assert built["rows"] == manifest["row_counts"]["interactions"]
    assert s3.filesystem().ls(f"{offline}/validation/profiles/meta_training")

    # The retrain CronJob's own pod (`flows run retrain`) in a fresh home: training set from the
    # published snapshot, the gate against the profile on S3, training, registration on S3.
    steps = cluster.run(manifests, "CronJob", "retrain", home=pods / "retrain")
    _succeeded(steps, ["retrain"])
    with _registry(cluster, tmp_path / "registry-reader") as registry:
        (version,) = registry.list_versions(model)
        actions = [entry.action for entry in registry.history(model, version=1)]
        production = registry.production_version(model)
    assert version.version == 1 and version.artifact_uri.startswith(s3.url("artifacts"))
    assert actions[:2] == ["register", "promote"], actions  # staging, then the bootstrap
    assert production == 1

    # The serving pod, its own empty home: it loads the retrained version from S3.
    serving = _serving_pod(cluster, manifests, pods / "serving")
    with serving:
        serving.wait_ready(timeout_s=150)
        answer = httpx.post(
            f"{serving.url('http')}/recommend", json={"user_id": 1, "k": 5}, timeout=60
        )
    assert answer.status_code == 200, f"{answer.text}\n{serving.output()}"
    assert answer.json()["model_version"] == version.tag
    assert len(answer.json()["items"]) == 5
    # Nothing went through a shared folder; the materialise pod never needed the snapshot.
    assert not cluster.home.exists()
    assert not (pods / "materialize" / "data" / "snapshots").exists()


def _registry(cluster, home: Path):
    """The model registry the pods share (its database from the rendered Secret), read here."""
    from metarec.config import load_settings
    from metarec.registry import Registry

    settings = load_settings(
        home=home,
        registry={
            "database_url": cluster.secrets["metarec-database"]["registry-url"],
            "export_bentoml": False,
        },
    )
    return Registry.open(settings)


def _serving_pod(cluster, manifests, volumes: Path):
    """The production serving Deployment's pod (not started), on free ports, its own home."""
    doc = manifests.get("Deployment", cluster.chart.name("serving-production"))
    spec = workloads.with_home(
        workloads.deployment_pod_spec(doc), cluster.values["home"]["path"], volumes / "home"
    )
    (volumes / "tmp").mkdir(parents=True)
    return workloads.pod_process(
        spec,
        workloads.Objects.of(manifests.docs, secrets=cluster.secrets),
        name="serving-harness",
        namespace=cluster.chart.namespace,
        cwd=cluster.workdir,
        node_env={"TMPDIR": str(volumes / "tmp")},
    )


def test_a_pod_whose_secret_is_missing_does_not_start(cluster):
    manifests = cluster.render(data={"materialize": {"enabled": True}})
    del cluster.secrets["metarec-redis"]
    with pytest.raises(Exception, match="Secret 'metarec-redis' not found"):
        cluster.run(manifests, "CronJob", "data-materialize")
