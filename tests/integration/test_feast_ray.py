"""Feast's Ray compute engine materialises MetaRec's features (Ray in local mode, 2 CPUs).

The engine is selected in ``feature_repo/local-ray/feature_store.yaml``; the values it writes
online are compared with those of Feast's default (in-process) engine over the same data.
"""

from pathlib import Path

import pandas as pd
import pytest
import yaml
from feast import FeatureStore, RepoConfig
from metarec.config import Settings, load_settings
from metarec.data.ingest import DataSource, read_source, write_snapshot
from metarec.data.snapshots import SnapshotStore
from metarec.data.synthetic import SyntheticSpec
from metarec.features.definitions import ONLINE_ADAPTATION
from metarec.features.store import (
    apply_features,
    expand_placeholders,
    materialize_features,
    open_store,
)

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2] / "feature_repo"
SPEC = SyntheticSpec(
    n_users=30, n_items=40, min_ratings_per_user=5, max_ratings_per_user=10, seed=3
)


def _home(root: Path, *, environment: str) -> Settings:
    """A home over the synthetic data, its Feast configuration that of ``environment``."""
    settings = load_settings(home=root / "home", feast={"environment": environment})
    dataset = read_source(DataSource.SYNTHETIC, download_dir=settings.paths.home, synthetic=SPEC)
    apply_features(settings, write_snapshot(dataset, SnapshotStore(settings.paths.snapshots)))
    return settings


def _online(store: FeatureStore, key: str, ids: list[int]) -> pd.DataFrame:
    """Every online-service feature keyed by ``key`` alone, for ``ids``, sorted by column."""
    refs = []
    for projection in store.get_feature_service(ONLINE_ADAPTATION).feature_view_projections:
        if store.get_feature_view(projection.name).join_keys == [key]:
            refs += [f"{projection.name}:{field.name}" for field in projection.features]
    frame = store.get_online_features(features=refs, entity_rows=[{key: i} for i in ids]).to_df()
    return frame.sort_index(axis=1)


@pytest.fixture
def ray_shutdown():
    """Stop the local Ray instance the engine starts (its processes) after the test."""
    from feast.infra.ray_initializer import shutdown_ray

    yield
    shutdown_ray()


@pytest.mark.slow
def test_ray_engine_materialises_what_the_local_engine_does(tmp_path, ray_shutdown):
    import ray
    from feast.infra.compute_engines.ray.compute import RayComputeEngine

    local = _home(tmp_path / "local", environment="local")
    on_ray = _home(tmp_path / "ray", environment="local-ray")  # feature_repo/local-ray/
    materialize_features(local)
    end = materialize_features(on_ray)

    store = open_store(on_ray)
    assert isinstance(store._get_provider().batch_engine, RayComputeEngine)
    assert ray.is_initialized()
    assert ray.cluster_resources()["CPU"] == 2
    users, items = list(range(1, SPEC.n_users + 1)), list(range(1, SPEC.n_items + 1))
    for key, ids in (("user_id", users), ("item_id", items)):
        expected = _online(open_store(local), key, ids)
        got = _online(store, key, ids)
        assert got.drop(columns=key).notna().any(axis=1).all(), f"{key}: rows missing online"
        pd.testing.assert_frame_equal(got, expected)
    online_views = [v for v in store.list_feature_views(allow_cache=False) if v.online]
    assert {max(e for _, e in v.materialization_intervals) for v in online_views} == {end}


def test_cluster_ray_configuration_selects_the_ray_engine_on_a_cluster():
    text = (REPO / "cluster-ray" / "feature_store.yaml").read_text()
    variables = {
        "METAREC_FEAST_PROJECT": "metarec",
        "METAREC_FEAST_REGISTRY_URL": "postgresql+psycopg://u@db:5432/feast",
        "METAREC_FEAST_REDIS": "redis:6379",
        "METAREC_FEAST_RAY_ADDRESS": "ray://metarec-ray-head:10001",
    }
    config = RepoConfig(**yaml.safe_load(expand_placeholders(text, variables)))
    engine = config.batch_engine
    assert (engine.type, engine.ray_address) == ("ray.engine", "ray://metarec-ray-head:10001")
    assert config.online_store.type == "redis"
    assert engine.write_concurrency > 1
