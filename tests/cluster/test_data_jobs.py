"""Data on the kubelet-less cluster: the chart's ingest Job and materialise CronJob run with
their rendered env against PostgreSQL, Redis and the S3 server, and leave features in Redis.

The team's tables live on the object store (``s3://`` URIs in the schema YAML). The snapshot is
written in the MetaRec home that the data pods share (``home.existingClaim`` on a cluster): the
chart has no setting that puts snapshots on the object store yet.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _tables_on_s3(s3, tmp_path: Path) -> tuple[Path, pd.DataFrame]:
    """A generated catalogue uploaded to S3; its schema YAML (local) names the s3:// tables."""
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
        url = s3.url("raw", f"{table}.parquet")
        fs.put_file(str(out / schema[table]["path"]), url)
        schema[table]["path"] = url
    local_schema = tmp_path / "schema.yaml"
    local_schema.write_text(yaml.safe_dump(schema))
    return local_schema, pd.read_parquet(out / "users.parquet")


def _succeeded(steps, names):
    assert [s.name for s in steps] == names, [(s.name, s.output[-2000:]) for s in steps]
    for step in steps:
        assert step.returncode == 0, f"{step.name} exited {step.returncode}:\n{step.output[-3000:]}"


def test_ingest_job_then_materialise_cronjob_put_the_s3_tables_into_redis(cluster, s3, tmp_path):
    from metarec.config import load_settings
    from metarec.data.snapshots import SnapshotStore
    from metarec.features.store import online_features, open_store

    schema, users = _tables_on_s3(s3, tmp_path)
    manifests = cluster.render(
        data={
            "ingest": {"onInstall": True, "source": "table", "schema": str(schema)},
            "materialize": {"enabled": True},
        }
    )

    _succeeded(cluster.run(manifests, "Job", "data-ingest-install"), ["ingest", "apply"])
    snapshot = SnapshotStore(cluster.home / "data" / "snapshots").get()
    assert snapshot.row_counts["users"] == len(users)
    assert snapshot.metadata["label_kind"] == "rating"

    _succeeded(cluster.run(manifests, "CronJob", "data-materialize"), ["materialize"])

    # Read back as the serving pods would: the online store named by the rendered env.
    settings = load_settings(
        home=cluster.home,
        feast={
            "environment": "cluster",
            "project": cluster.project,
            "repo_path": cluster.values["feastConfig"]["repoPath"],
            "registry_url": cluster.secrets["metarec-database"]["feast-registry-url"],
            "redis_connection_string": cluster.secrets["metarec-redis"]["connection-string"],
        },
    )
    store = open_store(settings)
    for _, user in users.head(3).iterrows():
        values = online_features(store, user_id=int(user["customer_id"]))
        assert values["country"] == user["country"]
        assert values["age"] == user["age"]


def test_a_pod_whose_secret_is_missing_does_not_start(cluster):
    manifests = cluster.render(data={"materialize": {"enabled": True}})
    del cluster.secrets["metarec-redis"]
    with pytest.raises(Exception, match="Secret 'metarec-redis' not found"):
        cluster.run(manifests, "CronJob", "data-materialize")
