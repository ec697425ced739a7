"""The cluster configuration against a real Redis online store and a real PostgreSQL registry."""

import socket
import uuid

import pytest
from metarec.config import load_settings
from metarec.data.ingest import DataSource, read_source, write_snapshot
from metarec.data.snapshots import SnapshotStore
from metarec.data.synthetic import SyntheticSpec
from metarec.features.store import apply_features, materialize_features, online_features, open_store
from metarec.features.training_set import build_training_set, load_training_set

pytestmark = pytest.mark.integration


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture
def cluster_settings(tmp_path):
    missing = [
        name
        for name, port in (("PostgreSQL", 5432), ("Redis", 6379))
        if not _reachable("127.0.0.1", port)
    ]
    if missing:
        pytest.skip(
            f"{' and '.join(missing)} not reachable on 127.0.0.1: cluster config not tested"
        )
    settings = load_settings(
        home=tmp_path / "home",
        feast={
            "environment": "cluster",
            "project": f"metarec_it_{uuid.uuid4().hex[:8]}",
            "registry_url": "postgresql+psycopg://postgres@127.0.0.1:5432/test",
            "redis_connection_string": "127.0.0.1:6379",
        },
    )
    yield settings
    open_store(settings).teardown()


def test_cluster_config_uses_redis_online_and_postgres_registry(cluster_settings):
    store = open_store(cluster_settings)
    assert store.config.online_store.type == "redis"
    assert store.config.registry.path.startswith("postgresql")

    dataset = read_source(
        DataSource.SYNTHETIC,
        download_dir=cluster_settings.paths.home,
        synthetic=SyntheticSpec(
            n_users=30, n_items=40, min_ratings_per_user=5, max_ratings_per_user=10, seed=1
        ),
    )
    snapshot = write_snapshot(dataset, SnapshotStore(cluster_settings.paths.snapshots))
    apply_features(cluster_settings, snapshot)
    materialize_features(cluster_settings)

    user = dataset.users.iloc[0]
    values = online_features(open_store(cluster_settings), user_id=int(user["user_id"]))
    assert values["occupation"] == user["occupation"]
    expected_count = int((dataset.interactions["user_id"] == user["user_id"]).sum())
    assert values["rating_count"] == expected_count

    out = cluster_settings.paths.training_sets / "cluster.parquet"
    build_training_set(cluster_settings, out=out)
    frame, manifest = load_training_set(out)
    assert (
        len(frame) == len(dataset.interactions)
        and manifest.feast_project == cluster_settings.feast.project
    )
