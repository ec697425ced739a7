"""Feature pipeline timings on MovieLens-100K: ingest, apply, materialise, retrieval, online lookup.

Usage: python benchmarks/features.py [--data ../shared/datasets/ml-100k.zip] [--lookups 1000]

Runs in a temporary MetaRec home; prints a table, then one JSON object (last line).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from metarec.config import load_settings
from metarec.environment import apply_process_environment

REPO = Path(__file__).resolve().parents[1]
P99_TARGET_MS = 10.0


def _timed_pipeline(settings, data: Path, tmp: Path):
    """Ingest, apply, materialise and retrieve the training set; each step's seconds."""
    from metarec.data.ingest import DataSource, read_source, write_snapshot
    from metarec.data.snapshots import SnapshotStore
    from metarec.features.store import apply_features, materialize_features
    from metarec.features.training_set import build_training_set

    seconds: dict[str, float] = {}
    started = time.perf_counter()
    dataset = read_source(DataSource.ML_100K, path=data, download_dir=tmp)
    snapshot = write_snapshot(dataset, SnapshotStore(settings.paths.snapshots))
    seconds["ingest_s"] = time.perf_counter() - started

    started = time.perf_counter()
    apply_features(settings, snapshot)
    seconds["apply_s"] = time.perf_counter() - started

    started = time.perf_counter()
    materialize_features(settings)
    seconds["materialize_s"] = time.perf_counter() - started

    started = time.perf_counter()
    manifest = build_training_set(settings, out=tmp / "training.parquet")
    seconds["historical_retrieval_s"] = time.perf_counter() - started
    return dataset, manifest, seconds


def _lookup_latencies(settings, users: np.ndarray, lookups: int) -> tuple[int, list[float]]:
    """Milliseconds of ``lookups`` online reads of every user feature (after a warm-up)."""
    from metarec.features.store import USER_VIEWS, open_store

    store = open_store(settings)
    refs = [
        f"{view.name}:{field.name}"
        for view in store.list_feature_views()
        if view.name in USER_VIEWS
        for field in view.features
    ]
    rng = np.random.default_rng(0)
    for user in rng.choice(users, 50):  # warm-up: registry cache, connections
        store.get_online_features(features=refs, entity_rows=[{"user_id": int(user)}])
    latencies = []
    for user in rng.choice(users, lookups):
        t0 = time.perf_counter()
        store.get_online_features(features=refs, entity_rows=[{"user_id": int(user)}]).to_dict()
        latencies.append((time.perf_counter() - t0) * 1000)
    return len(refs), latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared/datasets/ml-100k.zip")
    parser.add_argument("--lookups", type=int, default=1000)
    args = parser.parse_args()
    if not args.data.is_file():
        sys.exit(f"{args.data} not found: pass --data PATH to ml-100k.zip")

    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(home=Path(tmp) / "home")
        apply_process_environment(settings)
        dataset, manifest, seconds = _timed_pipeline(settings, args.data, Path(tmp))
        users = dataset.users["user_id"].to_numpy()
        features, latencies = _lookup_latencies(settings, users, args.lookups)

    p50 = statistics.median(latencies)
    p99 = float(np.percentile(latencies, 99))
    result = {
        "dataset": "ml-100k",
        "training_set_rows": manifest.rows,
        **{k: round(v, 2) for k, v in seconds.items()},
        "online_lookup": {
            "features": features,
            "lookups": len(latencies),
            "p50_ms": round(p50, 2),
            "p99_ms": round(p99, 2),
            "p99_target_ms": P99_TARGET_MS,
            "p99_target_met": p99 <= P99_TARGET_MS,
        },
    }
    print(f"{'step':<24}{'value':>12}")
    for key, value in seconds.items():
        print(f"{key:<24}{value:>12.2f}")
    print(f"{'online p50 (ms)':<24}{p50:>12.2f}")
    print(f"{'online p99 (ms)':<24}{p99:>12.2f}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
