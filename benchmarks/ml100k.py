"""The validated MovieLens-100K training set of a METAREC home, built through MetaRec's path.

Shared by the quality benchmarks (``coldstart_quality.py``, ``topn_quality.py``): ingest →
snapshot → Feast apply → point-in-time historical retrieval → validation gate.
"""

from __future__ import annotations

from pathlib import Path


def build_training_set(data: Path, home: Path) -> Path:
    """Ingest → Feast apply → historical retrieval → validation gate, in ``home``."""
    from metarec.config import load_settings
    from metarec.data.ingest import DataSource, read_source, write_snapshot
    from metarec.data.snapshots import SnapshotStore
    from metarec.environment import apply_process_environment
    from metarec.features.store import apply_features
    from metarec.features.training_set import build_training_set as build
    from metarec.validation.gate import build_reference_profile, validate_training_set

    settings = load_settings(home=home)
    apply_process_environment(settings)
    dataset = read_source(DataSource.ML_100K, path=data, download_dir=settings.paths.home)
    snapshot = write_snapshot(dataset, SnapshotStore(settings.paths.snapshots))
    apply_features(settings, snapshot)
    path = settings.paths.training_sets / "ml-100k.parquet"
    build(settings, out=path)
    # A fresh home has no reference profile yet: accept this training set as the reference
    # (integrity checked), then run the full gate on it, as the first pipeline run does.
    build_reference_profile(settings, training_set=path)
    result = validate_training_set(settings, training_set=path)
    if not result.success:
        raise SystemExit(f"validation gate failed on {path}: {result}")
    return path
