"""The quickstart: run every stage that exists, printing what each did."""

from __future__ import annotations

from pathlib import Path

from rich.table import Table

from metarec.cli.console import console, stage
from metarec.config import Settings

STAGES = 7


def run_quickstart(settings: Settings, *, source: str, path: Path | None, user: int) -> None:
    """Ingest → apply → materialize → show → training set → profile → validate."""
    from metarec.data.ingest import DataSource, input_identity, read_source, write_snapshot
    from metarec.data.snapshots import SnapshotStore
    from metarec.errors import ReferenceProfileNotFoundError
    from metarec.features.definitions import META_TRAINING
    from metarec.features.store import (
        apply_features,
        materialize_features,
        online_features,
        open_store,
    )
    from metarec.features.training_set import build_training_set, default_training_set_path
    from metarec.validation.gate import (
        build_reference_profile,
        profile_store,
        raise_for_failure,
        validate_training_set,
    )

    console.rule(f"MetaRec quickstart (home: {settings.paths.home})")
    data_source = DataSource(source)
    with stage(f"1/{STAGES} Ingest {source} from {path or 'the official archive'}"):
        dataset = read_source(
            data_source, path=path, download_dir=settings.paths.home / "downloads"
        )
        snapshot = write_snapshot(
            dataset,
            SnapshotStore(settings.paths.snapshots),
            input_checksum=input_identity(data_source, path=path),
        )
    with stage(f"2/{STAGES} Register features in Feast (apply)"):
        apply_features(settings, snapshot)
    with stage(f"3/{STAGES} Materialise features into the online store"):
        materialize_features(settings)
    with stage(f"4/{STAGES} Read user {user}'s features from the online store"):
        values = online_features(open_store(settings), user_id=user)
    out = default_training_set_path(settings, snapshot.snapshot_id)
    with stage(f"5/{STAGES} Build the point-in-time training set (Feast historical retrieval)"):
        manifest = build_training_set(settings, out=out)
    try:
        profile = profile_store(settings).current(META_TRAINING)
        profile_note = f"reference profile {profile.label} (existing)"
        console.print(f"  {STAGES - 1}/{STAGES} Reference profile {profile.label} already exists")
    except ReferenceProfileNotFoundError:
        with stage(f"6/{STAGES} Accept this first training set as the reference profile"):
            profile, _ = build_reference_profile(settings, training_set=out)
        profile_note = f"reference profile {profile.label} (new, from this snapshot)"
    with stage(f"7/{STAGES} Validate the training set (Great Expectations gate)"):
        result = validate_training_set(settings, training_set=out)
    raise_for_failure(result)

    table = Table("feature", "value", title=f"User {user} (online store)")
    for name, value in values.items():
        table.add_row(name, str(value))
    console.print(table)
    counts = dataset.summary()
    passed = sum(item.success for item in result.expectations)
    console.print(
        f"Snapshot {snapshot.snapshot_id}: {counts['interactions']:,} ratings, "
        f"{counts['users']:,} users, {counts['items']:,} items\n"
        f"Training set: {manifest.rows:,} rows → {out}\n"
        f"Fingerprint: {manifest.fingerprint}\n"
        f"Validation: PASSED {passed}/{len(result.expectations)} expectations against "
        f"{profile_note}; result {result.result_id}\n"
        f"Validation report: {result.report_html}\n"
        "Not yet in this loop: meta-training, evaluation gate, registry, serving, canary "
        "(see the open issues)."
    )
