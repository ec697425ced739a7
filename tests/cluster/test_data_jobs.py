"""Data on the kubelet-less cluster: the chart's ingest Job, materialise CronJob and the retrain
pod's training-set build run with their rendered env against PostgreSQL, Redis and the S3 server.

Every pod has its own empty home (an ``emptyDir``), so nothing travels between them through a
shared folder: the team's schema and tables are on the object store (``--schema s3://…``), the
ingest pod publishes the snapshot to ``externalS3.offlineRoot``, the materialise pod reads the
Feast sources there, and the retrain pod fetches the snapshot from there to build its training set.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _schema_on_s3(s3, tmp_path: Path) -> tuple[str, pd.DataFrame]:
    """A generated catalogue uploaded to S3 with its schema YAML beside it: the interactions
    named by an ``s3://`` URI, the users and items by paths relative to the YAML."""
    out = tmp_path / "catalogue"
    subprocess.run(
        [
            *(str(Path(sys.prefix) / "bin" / "metarec"), "data", "generate", "--out", str(out)),
            *("--users", "40", "--items", "30", "--format", "parquet"),
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


def test_data_pods_with_their_own_homes_share_the_snapshot_through_the_object_store(
    cluster, s3, tmp_path
):
    from metarec.features.store import online_features, open_store

    schema, users = _schema_on_s3(s3, tmp_path)
    offline = s3.url("offline")
    manifests = cluster.render(
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

    # The retrain pod's first steps (`flows run retrain`: training set, then the gate).
    build = {
        "training-set": ["features", "training-set"],
        "profile": ["features", "profile"],
        "validate": ["features", "validate"],
    }
    retrain = pods / "retrain"
    steps = cluster.run(manifests, "CronJob", "retrain", home=retrain, commands=build)
    _succeeded(steps, list(build))
    training_set = retrain / "training_sets" / f"{manifest['snapshot_id']}.parquet"
    built = json.loads(training_set.with_suffix(".manifest.json").read_text())
    assert built["snapshot_id"] == manifest["snapshot_id"]
    assert built["rows"] == manifest["row_counts"]["interactions"]
    assert len(pd.read_parquet(training_set)) == built["rows"]
    record = json.loads(training_set.with_suffix(".validation.json").read_text())
    assert record["success"] is True
    assert record["dataset_fingerprint"] == built["fingerprint"]
    # Nothing went through a shared folder; the materialise pod never needed the snapshot.
    assert not cluster.home.exists()
    assert not (pods / "materialize" / "data" / "snapshots").exists()


def test_a_pod_whose_secret_is_missing_does_not_start(cluster):
    manifests = cluster.render(data={"materialize": {"enabled": True}})
    del cluster.secrets["metarec-redis"]
    with pytest.raises(Exception, match="Secret 'metarec-redis' not found"):
        cluster.run(manifests, "CronJob", "data-materialize")
