"""Training sets, built only through Feast's point-in-time correct historical retrieval.

A training set's location is a local path or an fsspec URL (``s3://bucket/ts.parquet``,
``gs://…``, ``file://…``): its manifest and validation record are the files beside it there.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import overload

import fsspec
import pandas as pd
from feast import FeatureService
from pydantic import BaseModel, ConfigDict

from metarec.clock import utc_now
from metarec.config import Settings
from metarec.data.inputs import is_uri
from metarec.data.snapshot_remote import remote_snapshots, resolve_snapshot
from metarec.data.snapshots import SnapshotInfo, SnapshotStore
from metarec.digests import sha256_bytes
from metarec.errors import DataSourceNotFoundError, FeatureStoreError
from metarec.features.catalog import MANAGED_VIEWS
from metarec.features.declared import (
    DeclaredFeature,
    declared_features,
    feature_from_field,
    is_table_snapshot,
)
from metarec.features.definitions import META_TRAINING
from metarec.features.fingerprint import dataset_fingerprint
from metarec.features.model_inputs import InputField, service_inputs
from metarec.features.store import applied_snapshot_id, open_store

ENTITY_COLUMNS = ("interaction_id", "user_id", "item_id", "event_timestamp")


class TrainingSetManifest(BaseModel):
    """What is recorded beside a training set (``<name>.manifest.json``)."""

    model_config = ConfigDict(frozen=True)

    path: str
    fingerprint: str
    rows: int
    columns: list[str]
    feature_service: str
    feature_service_version: str
    snapshot_id: str
    feast_project: str
    created_at: datetime
    declared_features: list[DeclaredFeature] = []  # features checked from their types
    table_snapshot: bool = False  # built over a team's own tables (``--source table``)
    input_fields: list[InputField] = []  # the model's inputs (metarec.features.model_inputs)


def default_training_set_path(settings: Settings, snapshot_id: str) -> Path:
    """Where the training set of a snapshot goes by default."""
    return settings.paths.training_sets / f"{snapshot_id}.parquet"


def newest_training_set(settings: Settings) -> Path:
    """The most recently written training set of this home.

    Raises:
        DataSourceNotFoundError: There is none.
    """
    folder = settings.paths.training_sets
    candidates = (
        [p for p in folder.glob("*.parquet") if not p.name.startswith(".")]
        if folder.is_dir()
        else []
    )
    if not candidates:
        raise DataSourceNotFoundError(
            f"{folder}/*.parquet (no training set)",
            fix="build one with `metarec features training-set`, or pass --training-set PATH.",
        )
    return max(candidates, key=lambda path: (path.stat().st_mtime_ns, path.name))


# A training set's location: a local path, or an fsspec URL (``s3://bucket/ts.parquet``).
Location = str | os.PathLike[str]


@overload
def sibling(location: Path, suffix: str) -> Path: ...
@overload
def sibling(location: str, suffix: str) -> str: ...
def sibling(location: Path | str, suffix: str) -> Path | str:
    """The file beside ``location`` named by its stem and ``suffix`` (a URL stays a URL)."""
    if isinstance(location, Path):
        return location.with_name(location.stem + suffix)
    head, slash, name = str(location).rpartition("/")
    return f"{head}{slash}{PurePosixPath(name).stem}{suffix}"


def read_text(location: Location) -> str | None:
    """The text of a local file or fsspec URL, or None when there is no such file."""
    try:
        with fsspec.open(os.fspath(location), "r", encoding="utf-8") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def write_text(location: Location, text: str) -> None:
    """Write a text file atomically: a local rename, or one object put on a store."""
    if is_uri(location):
        with fsspec.open(os.fspath(location), "w", encoding="utf-8") as handle:
            handle.write(text)
        return
    path = Path(location)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


@overload
def manifest_path(training_set: Path) -> Path: ...
@overload
def manifest_path(training_set: str) -> str: ...
def manifest_path(training_set: Path | str) -> Path | str:
    """The manifest file beside a training set (a URL for a training set on a store)."""
    return sibling(training_set, ".manifest.json")


def read_manifest(training_set: Location) -> TrainingSetManifest:
    """Read the manifest beside a training set (a local path or an fsspec URL).

    Raises:
        FeatureStoreError: There is none (the file was not built by MetaRec).
    """
    path = manifest_path(as_location(training_set))
    text = read_text(path)
    if text is None:
        name = path.name if isinstance(path, Path) else path.rpartition("/")[2]
        raise FeatureStoreError(
            f"{training_set} has no manifest ({name}).",
            fix="build training sets with `metarec features training-set --out PATH`, and copy "
            "the manifest and validation record beside a training set you move.",
        )
    return TrainingSetManifest.model_validate_json(text)


def as_location(location: Location) -> Path | str:
    """A URL as its string (``s3://…``), anything else as a local :class:`~pathlib.Path`."""
    return str(location) if is_uri(location) else Path(location)


def feature_service_version(refs: list[str], snapshot_id: str) -> str:
    """A short, stable version of a feature service: its feature references and snapshot."""
    payload = json.dumps({"features": sorted(refs), "snapshot": snapshot_id}).encode()
    return sha256_bytes(payload)[:12]


def checked_features(
    snapshot: SnapshotInfo, service: FeatureService, *, columns: list[str]
) -> list[DeclaredFeature]:
    """The features of a training set whose checks follow from their types.

    A ``table`` snapshot's declared features (with their declared type, nullability and vector
    dimension), then the fields of a team's own views (``feature_repo/user_features.py``) typed
    from their Feast type. MovieLens' own features are covered by the static suite instead.
    """
    declared = declared_features(snapshot) if is_table_snapshot(snapshot) else []
    checked = [feature for feature in declared if feature.name in columns]
    seen = {feature.name for feature in checked}
    for projection in service.feature_view_projections:
        if projection.name in MANAGED_VIEWS:
            continue
        for field in projection.features:
            feature = feature_from_field(field)
            if feature is not None and feature.name not in seen:
                checked.append(feature)
                seen.add(feature.name)
    return checked


def build_training_set(
    settings: Settings, *, out: Location | None = None, feature_service: str = META_TRAINING
) -> TrainingSetManifest:
    """Join every interaction of the applied snapshot with its features as of its timestamp.

    Args:
        settings: Active settings.
        out: Parquet file to write (atomically), a local path or an fsspec URL; the manifest
            goes beside it. Default: :func:`default_training_set_path` of the applied snapshot.
        feature_service: Feast feature service to retrieve.

    Returns:
        The manifest (fingerprint, row count, lineage).

    Raises:
        FeatureStoreError: Features are not applied, or retrieval failed.
    """
    store = open_store(settings)
    snapshot_id = applied_snapshot_id(store)
    out = out or default_training_set_path(settings, snapshot_id)
    snapshots = SnapshotStore(settings.paths.snapshots)
    # A pod with its own home fetches the applied snapshot from the offline root (verified).
    remote = remote_snapshots(settings.feast.offline_root)
    snapshot = resolve_snapshot(snapshots, remote, snapshot_id)
    interactions = snapshots.read_table("interactions", snapshot_id=snapshot_id)
    service = store.get_feature_service(feature_service)
    entity_df = interactions.loc[:, list(ENTITY_COLUMNS)]
    try:
        joined = store.get_historical_features(entity_df=entity_df, features=service).to_df()
    except Exception as exc:
        raise FeatureStoreError(
            f"Historical retrieval for feature service {feature_service!r} failed ({exc}).",
            fix="run `metarec features apply` again; check the snapshot tables exist.",
        ) from exc
    fields = [
        (projection.name, field.name)
        for projection in service.feature_view_projections
        for field in projection.features
    ]
    joined = joined.loc[:, [*ENTITY_COLUMNS, *(name for _, name in fields)]]
    joined = joined.sort_values(["user_id", "event_timestamp", "item_id"], kind="stable")
    joined = joined.reset_index(drop=True)
    refs = [f"{view}:{name}" for view, name in fields]
    declared = declared_features(snapshot) if is_table_snapshot(snapshot) else []
    manifest = TrainingSetManifest(
        path=str(out),
        fingerprint=dataset_fingerprint(joined),
        rows=len(joined),
        columns=list(joined.columns),
        feature_service=feature_service,
        feature_service_version=feature_service_version(refs, snapshot_id),
        snapshot_id=snapshot_id,
        feast_project=store.project,
        created_at=utc_now(),
        declared_features=checked_features(snapshot, service, columns=list(joined.columns)),
        table_snapshot=is_table_snapshot(snapshot),
        input_fields=service_inputs(store, service, declared=declared),
    )
    _write(joined, manifest, out)
    return manifest


def _write(joined: pd.DataFrame, manifest: TrainingSetManifest, out: Location) -> None:
    """Write the training set, then its manifest, each atomically (locally or on a store)."""
    target = as_location(out)
    if isinstance(target, str):
        with fsspec.open(target, "wb") as handle:
            joined.to_parquet(handle, index=False)
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp")
        joined.to_parquet(tmp, index=False)
        os.replace(tmp, target)
    write_text(manifest_path(target), manifest.model_dump_json(indent=2))


def load_training_set(path: Location) -> tuple[pd.DataFrame, TrainingSetManifest]:
    """Read a training set and its manifest from a local path or an fsspec URL.

    Raises:
        DataSourceNotFoundError: There is no training set at ``path``.
        FeatureStoreError: It has no manifest.
    """
    location = as_location(path)
    try:
        if isinstance(location, Path):  # arrow reads the file natively
            frame = pd.read_parquet(location)
        else:
            with fsspec.open(location, "rb") as handle:
                frame = pd.read_parquet(handle)
    except FileNotFoundError as exc:
        raise DataSourceNotFoundError(
            f"{location} (no training set)",
            fix="pass the location of a training set built by `metarec features training-set`.",
        ) from exc
    return frame, read_manifest(location)
