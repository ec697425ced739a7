"""The quickstart: run every stage that exists, printing what each did."""

from __future__ import annotations

from pathlib import Path

from rich.table import Table

from metarec.cli.console import console, stage
from metarec.config import Settings


def run_quickstart(settings: Settings, *, source: str, path: Path | None, user: int) -> None:
    """Ingest → apply → materialize → show → training set, on embedded defaults."""
    from metarec.data.ingest import DataSource, read_source, write_snapshot
    from metarec.data.snapshots import SnapshotStore
    from metarec.features.store import (
        apply_features,
        materialize_features,
        online_features,
        open_store,
    )
    from metarec.features.training_set import build_training_set

    console.rule(f"MetaRec quickstart (home: {settings.paths.home})")
    with stage(f"1/5 Ingest {source} from {path or 'the official archive'}"):
        dataset = read_source(
            DataSource(source), path=path, download_dir=settings.paths.home / "downloads"
        )
        snapshot = write_snapshot(dataset, SnapshotStore(settings.paths.snapshots))
    with stage("2/5 Register features in Feast (apply)"):
        apply_features(settings, snapshot)
    with stage("3/5 Materialise features into the online store"):
        materialize_features(settings)
    with stage(f"4/5 Read user {user}'s features from the online store"):
        values = online_features(open_store(settings), user_id=user)
    out = settings.paths.training_sets / f"{snapshot.snapshot_id}.parquet"
    with stage("5/5 Build the point-in-time training set"):
        manifest = build_training_set(settings, out=out)

    table = Table("feature", "value", title=f"User {user} (online store)")
    for name, value in values.items():
        table.add_row(name, str(value))
    console.print(table)
    counts = dataset.summary()
    console.print(
        f"Snapshot {snapshot.snapshot_id}: {counts['interactions']:,} ratings, "
        f"{counts['users']:,} users, {counts['items']:,} items\n"
        f"Training set: {manifest.rows:,} rows → {out}\n"
        f"Fingerprint: {manifest.fingerprint}\n"
        "Not yet in this loop: validation, meta-training, registry, serving, canary "
        "(see the open issues)."
    )
