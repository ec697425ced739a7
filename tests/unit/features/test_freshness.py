import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
from metarec.config import load_settings
from metarec.data.ingest import DataSource, read_source, write_snapshot
from metarec.data.snapshots import SnapshotStore
from metarec.data.synthetic import SyntheticSpec
from metarec.errors import FeatureStoreError
from metarec.features.freshness import MaterializationReader, last_materializations
from metarec.features.store import apply_features, materialize_features, open_store

REPO = Path(__file__).resolve().parents[3] / "feature_repo"
SPEC = SyntheticSpec(n_users=12, n_items=15, min_ratings_per_user=3, max_ratings_per_user=5, seed=1)


def test_materialisation_ends_of_the_online_views_come_from_the_registry(settings):
    dataset = read_source(DataSource.SYNTHETIC, download_dir=settings.paths.home, synthetic=SPEC)
    apply_features(settings, write_snapshot(dataset, SnapshotStore(settings.paths.snapshots)))
    store = open_store(settings)
    online = {v.name for v in store.list_feature_views() if v.online}
    offline = {v.name for v in store.list_feature_views() if not v.online}
    assert online and offline  # MetaRec applies both kinds (the training label is offline)

    read = MaterializationReader(settings)
    assert read() == dict.fromkeys(online)  # applied, never materialised

    end = datetime(2026, 1, 5, 8, 30, tzinfo=UTC)
    materialize_features(settings, end=end)
    assert last_materializations(open_store(settings)) == dict.fromkeys(online, end)
    assert read() == dict.fromkeys(online, end)  # the reader's open store is not cached


def test_reader_raises_a_feature_store_error_then_recovers_once_the_store_opens(tmp_path):
    repo = tmp_path / "repo"
    settings = load_settings(home=tmp_path / "home", feast={"repo_path": repo})
    read = MaterializationReader(settings)  # builds without touching Feast
    with pytest.raises(FeatureStoreError, match=r"feature_store\.yaml"):
        read()
    shutil.copytree(REPO, repo, ignore=shutil.ignore_patterns("__pycache__"))
    assert read() == {}  # opened on the next call: nothing applied yet
