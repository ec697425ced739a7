"""Shared fixtures: an isolated MetaRec home per test, the MovieLens copy, prepared stores and
the S3-compatible server.

Markers (registered in pyproject.toml): integration, e2e, gpu, slow.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path
from types import ModuleType

import pytest
from metarec.config import Settings, load_settings
from metarec.environment import apply_process_environment

REPO_ROOT = Path(__file__).resolve().parents[1]
ML100K_ZIP = REPO_ROOT.parent / "shared" / "datasets" / "ml-100k.zip"
_S3_SERVER_MODULE = "metarec_tests_s3_server"


def _load_s3_server() -> ModuleType:
    """``tests/s3_server.py``, loaded once under its own name (``tests/`` is not a package)."""
    if _S3_SERVER_MODULE in sys.modules:
        return sys.modules[_S3_SERVER_MODULE]
    spec = importlib.util.spec_from_file_location(
        _S3_SERVER_MODULE, Path(__file__).with_name("s3_server.py")
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[_S3_SERVER_MODULE] = module
    spec.loader.exec_module(module)
    return module


# Defined here once, for every folder: a fixture re-exported by two conftests is two fixtures,
# hence two session servers, and an s3fs instance cached in one test would then write to the
# other server than the one a later test reads.
_s3_server = _load_s3_server()
s3_server = _s3_server.s3_server
s3 = _s3_server.s3

# Telemetry off and no stray homes for anything the tests import.
_TEST_SETTINGS = load_settings(home=Path(os.environ.get("TMPDIR", "/tmp")) / "metarec-tests")
apply_process_environment(_TEST_SETTINGS)
_TEST_SETTINGS.paths.prefect_home.mkdir(parents=True, exist_ok=True)


@pytest.fixture(scope="session")
def prefect_server():
    """One real, ephemeral Prefect server (temporary database) shared by the whole session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


def make_settings(home: Path, **overrides: object) -> Settings:
    """Settings for a MetaRec home under ``home``, with the checkout's feature repo."""
    return load_settings(home=home, **overrides)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings whose home is a fresh temporary folder."""
    return make_settings(tmp_path / "home")


@pytest.fixture(scope="session")
def ml100k_zip() -> Path:
    """The MovieLens-100K archive in ../shared (skips with a reason where it is absent)."""
    if not ML100K_ZIP.is_file():
        pytest.skip(f"MovieLens-100K not found at {ML100K_ZIP} (../shared is absent)")
    return ML100K_ZIP


@pytest.fixture(scope="session")
def ml100k_home(tmp_path_factory: pytest.TempPathFactory, ml100k_zip: Path) -> Settings:
    """A home with ml-100k ingested, applied, materialised and its training set built.

    Shared by the whole session (read-only: tests that change a home copy it first with
    :func:`copy_home`). The training set is at ``<home>/training_sets/ml-100k.parquet``.
    """
    from metarec.data.ingest import DataSource, read_source, write_snapshot
    from metarec.data.snapshots import SnapshotStore
    from metarec.features.store import apply_features, materialize_features
    from metarec.features.training_set import build_training_set

    settings = make_settings(tmp_path_factory.mktemp("ml100k") / "home")
    dataset = read_source(DataSource.ML_100K, path=ml100k_zip, download_dir=settings.paths.home)
    snapshot = write_snapshot(dataset, SnapshotStore(settings.paths.snapshots))
    apply_features(settings, snapshot)
    materialize_features(settings)
    build_training_set(settings, out=settings.paths.training_sets / "ml-100k.parquet")
    return settings


@pytest.fixture(scope="session")
def synthetic_home(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """A home with a small synthetic dataset ingested, applied, materialised, training set built.

    The training set is at ``<home>/training_sets/synthetic.parquet``.
    """
    from metarec.data.ingest import DataSource, read_source, write_snapshot
    from metarec.data.snapshots import SnapshotStore
    from metarec.data.synthetic import SyntheticSpec
    from metarec.features.store import apply_features, materialize_features
    from metarec.features.training_set import build_training_set

    settings = make_settings(tmp_path_factory.mktemp("synthetic") / "home")
    dataset = read_source(
        DataSource.SYNTHETIC,
        download_dir=settings.paths.home,
        synthetic=SyntheticSpec(
            n_users=120, n_items=150, min_ratings_per_user=15, max_ratings_per_user=40, seed=7
        ),
    )
    snapshot = write_snapshot(dataset, SnapshotStore(settings.paths.snapshots))
    apply_features(settings, snapshot)
    materialize_features(settings)
    build_training_set(settings, out=settings.paths.training_sets / "synthetic.parquet")
    return settings


@pytest.fixture(scope="session")
def event_home(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """A home with a generated catalogue of implicit events (views, clicks, purchases; clicks
    and purchases positive) ingested as a team's tables, applied, materialised, and a training
    set built and validated by the Great Expectations suite.

    The training set is at ``<home>/training_sets/events.parquet``.
    """
    from metarec.data.catalogue import CatalogueSpec
    from metarec.testing.catalogue import catalogue_home

    spec = CatalogueSpec(n_users=400, n_items=150, label="event", ids="int", seed=5)
    settings, _ = catalogue_home(tmp_path_factory.mktemp("events"), spec=spec)
    return settings


def copy_home(settings: Settings, destination: Path) -> Settings:
    """Copy a prepared home so a test can change it without touching the shared one."""
    shutil.copytree(settings.paths.home, destination)
    return make_settings(destination)
