"""Validation gate timings on the 100,000-row MovieLens-100K training set.

Usage: python benchmarks/validation.py [--data ../shared/datasets/ml-100k.zip] [--repeat 3]
                                       [--home EXISTING_HOME]

Builds the training set through Feast in a temporary MetaRec home (or uses the newest one of
``--home``, copied so it is left untouched), builds the reference profile, then times the whole
gate (`validate_training_set`: read, fingerprint, Great Expectations suite, JSON + HTML +
record) ``--repeat`` times in one process. Imports are done before any timer starts; the profile
step is the first Great Expectations run of the process (cold: lazy registrations), the
validations follow. Prints a table, then one JSON object (last line). Target: validating the
100,000 rows takes ≤ 5 s.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from metarec.config import load_settings
from metarec.environment import apply_process_environment

REPO = Path(__file__).resolve().parents[1]
TARGET_SECONDS = 5.0


def _build_training_set(settings, data: Path) -> Path:
    from metarec.data.ingest import DataSource, read_source, write_snapshot
    from metarec.data.snapshots import SnapshotStore
    from metarec.features.store import apply_features, materialize_features
    from metarec.features.training_set import build_training_set

    dataset = read_source(DataSource.ML_100K, path=data, download_dir=settings.paths.home)
    snapshot = write_snapshot(dataset, SnapshotStore(settings.paths.snapshots))
    apply_features(settings, snapshot)
    materialize_features(settings)
    out = settings.paths.training_sets / "ml-100k.parquet"
    build_training_set(settings, out=out)
    return out


def _copied_training_set(settings, home: Path) -> Path:
    """The newest training set of ``home`` (and its manifest), copied into ``settings``' home."""
    from metarec.features.training_set import manifest_path
    from metarec.validation.gate import newest_training_set

    source = newest_training_set(load_settings(home=home))
    training_set = settings.paths.training_sets / source.name
    training_set.parent.mkdir(parents=True)
    shutil.copyfile(source, training_set)
    shutil.copyfile(manifest_path(source), manifest_path(training_set))
    return training_set


def _time_gate(settings, training_set: Path, repeat: int):
    """Seconds of the reference profile, then of ``repeat`` whole gates (and their suites)."""
    from metarec.validation.gate import build_reference_profile, validate_training_set

    started = time.perf_counter()
    build_reference_profile(settings, training_set=training_set)
    profile_seconds = time.perf_counter() - started
    runs: list[float] = []
    suite_seconds: list[float] = []
    for _ in range(repeat):
        started = time.perf_counter()
        result = validate_training_set(settings, training_set=training_set)
        runs.append(time.perf_counter() - started)
        suite_seconds.append(result.duration_seconds)
        if not result.success:
            sys.exit(f"validation failed: {result.failed_expectations}")
    return profile_seconds, runs, suite_seconds, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared/datasets/ml-100k.zip")
    parser.add_argument("--home", type=Path, default=None, help="Reuse this home's training set.")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(home=Path(tmp) / "home")
        apply_process_environment(settings)
        # Every import happens here, before any timer starts.
        import great_expectations as gx
        import metarec.features.training_set
        import metarec.validation.gate  # noqa: F401

        if args.home is not None:
            training_set = _copied_training_set(settings, args.home)
        else:
            if not args.data.is_file():
                sys.exit(f"{args.data} not found: pass --data PATH to ml-100k.zip")
            training_set = _build_training_set(settings, args.data)
        profile_seconds, runs, suite_seconds, result = _time_gate(
            settings, training_set, args.repeat
        )

    output = {
        "benchmark": "validation",
        "dataset": "ml-100k",
        "rows": result.rows,
        "expectations": result.statistics.evaluated,
        "suite": f"{result.suite_name} {result.suite_version}",
        "great_expectations": gx.__version__,
        "cpus": os.cpu_count(),
        "profile_seconds": round(profile_seconds, 3),
        "validate_seconds": round(runs[0], 3),
        "validate_seconds_warm_median": round(statistics.median(runs[1:] or runs), 3),
        "validate_seconds_runs": [round(v, 3) for v in runs],
        "suite_only_seconds_runs": suite_seconds,
        "target_seconds": TARGET_SECONDS,
        "target_met": runs[0] <= TARGET_SECONDS,
    }
    print(f"{'step':<36}{'seconds':>10}")
    print(f"{'profile (integrity checks + stats)':<36}{profile_seconds:>10.2f}")
    for index, (total, suite) in enumerate(zip(runs, suite_seconds, strict=True), 1):
        print(f"{f'validate run {index} (suite only)':<36}{total:>10.2f}  ({suite:.2f})")
    print(json.dumps(output))


if __name__ == "__main__":
    main()
