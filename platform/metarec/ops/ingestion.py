"""Ingest a dataset into a new current snapshot.

The use case behind ``metarec data ingest``, the ``ingest_data`` component and the quickstart's
first step.

With ``reuse_unchanged`` (pipelines), an ingest whose input is the one the current snapshot was
made from (same archive checksum, same folder or table files, same synthetic spec) returns that
snapshot and writes nothing.

With ``feast.offline_root`` set (a cluster), the snapshot is also published there
(:mod:`metarec.data.snapshot_remote`): tables, manifest, then ``CURRENT``, so pods with their own
home find it. ``path`` and ``schema`` may be fsspec URIs (``s3://…``, ``file://…``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from metarec.config import Settings
from metarec.data.ingest import DataSource, input_identity, read_source, write_snapshot
from metarec.data.inputs import Input, local_input, local_schema
from metarec.data.snapshot_remote import RemoteSnapshots, remote_snapshots, resolve_snapshot
from metarec.data.snapshots import SnapshotInfo, SnapshotStore
from metarec.data.synthetic import SyntheticSpec
from metarec.errors import SnapshotNotFoundError


@dataclass(frozen=True)
class Ingested:
    """The current snapshot after an ingest, and whether it was reused."""

    snapshot: SnapshotInfo
    reused: bool

    @property
    def counts(self) -> dict[str, int]:
        """Rows of the users, items and interactions tables."""
        rows = self.snapshot.row_counts
        return {name: rows.get(name, 0) for name in ("users", "items", "interactions")}

    @property
    def label_kind(self) -> str:
        """``rating`` (explicit ratings) or ``event`` (implicit events)."""
        return str(self.snapshot.metadata.get("label_kind", "rating"))


def ingest(
    settings: Settings,
    *,
    source: DataSource,
    path: Input | None = None,
    url: str | None = None,
    checksum: str | None = None,
    synthetic: SyntheticSpec | None = None,
    schema: Input | None = None,
    reuse_unchanged: bool = False,
    on_download: Callable[[int, int | None], None] | None = None,
) -> Ingested:
    """Read ``source`` and write it as the new current snapshot (atomically).

    Args:
        settings: Platform settings (the snapshot store and download folder).
        source: Dataset layout.
        path: Archive or folder (MovieLens sources), a path or an fsspec URI.
        url: Archive URL when ``path`` is not given (checksum verified).
        checksum: Expected checksum of the download.
        synthetic: Generator settings (synthetic source).
        schema: The schema YAML of a ``table`` source, a path or an fsspec URI.
        reuse_unchanged: Return the current snapshot when it was made from the same input.
        on_download: Download progress callback.

    Returns:
        The snapshot and whether it was reused.

    Raises:
        MetaRecError: Bad input; the previous snapshot stays current.
    """
    downloads = settings.paths.home / "downloads"
    local_path = local_input(path, download_dir=downloads) if path is not None else None
    local_yaml = local_schema(schema, download_dir=downloads) if schema is not None else None
    identity = input_identity(source, path=local_path, synthetic=synthetic, schema=local_yaml)
    store = SnapshotStore(settings.paths.snapshots)
    remote = remote_snapshots(settings.feast.offline_root)
    if reuse_unchanged and identity:
        current = _current(store, remote)
        if current is not None and current.metadata.get("input_checksum") == identity:
            return Ingested(snapshot=_published(current, remote), reused=True)
    dataset = read_source(
        source,
        path=local_path,
        url=url,
        checksum=checksum,
        download_dir=downloads,
        synthetic=synthetic,
        schema=local_yaml,
        on_download=on_download,
    )
    snapshot = write_snapshot(dataset, store, input_checksum=identity)
    return Ingested(snapshot=_published(snapshot, remote), reused=False)


def _published(snapshot: SnapshotInfo, remote: RemoteSnapshots | None) -> SnapshotInfo:
    """Publish ``snapshot`` as the current one of the offline root, when there is one."""
    if remote is not None:
        remote.publish(snapshot)
    return snapshot


def _current(store: SnapshotStore, remote: RemoteSnapshots | None) -> SnapshotInfo | None:
    try:
        return resolve_snapshot(store, remote)
    except SnapshotNotFoundError:
        return None
