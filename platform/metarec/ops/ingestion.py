"""Ingest a dataset into a new current snapshot.

The use case behind ``metarec data ingest``, the ``ingest_data`` component and the quickstart's
first step.

With ``reuse_unchanged`` (pipelines), an ingest whose input is the one the current snapshot was
made from (same archive checksum, same folder or table files, same synthetic spec) returns that
snapshot and writes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from metarec.config import Settings
from metarec.data.ingest import DataSource, input_identity, read_source, write_snapshot
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
    path: Path | None = None,
    url: str | None = None,
    checksum: str | None = None,
    synthetic: SyntheticSpec | None = None,
    schema: Path | None = None,
    reuse_unchanged: bool = False,
    on_download: Callable[[int, int | None], None] | None = None,
) -> Ingested:
    """Read ``source`` and write it as the new current snapshot (atomically).

    Args:
        settings: Platform settings (the snapshot store and download folder).
        source: Dataset layout.
        path: Local archive or folder (MovieLens sources).
        url: Archive URL when ``path`` is not given (checksum verified).
        checksum: Expected checksum of the download.
        synthetic: Generator settings (synthetic source).
        schema: The schema YAML of a ``table`` source.
        reuse_unchanged: Return the current snapshot when it was made from the same input.
        on_download: Download progress callback.

    Returns:
        The snapshot and whether it was reused.

    Raises:
        MetaRecError: Bad input; the previous snapshot stays current.
    """
    identity = input_identity(source, path=path, synthetic=synthetic, schema=schema)
    store = SnapshotStore(settings.paths.snapshots)
    if reuse_unchanged and identity:
        current = _current(store)
        if current is not None and current.metadata.get("input_checksum") == identity:
            return Ingested(snapshot=current, reused=True)
    dataset = read_source(
        source,
        path=path,
        url=url,
        checksum=checksum,
        download_dir=settings.paths.home / "downloads",
        synthetic=synthetic,
        schema=schema,
        on_download=on_download,
    )
    return Ingested(snapshot=write_snapshot(dataset, store, input_checksum=identity), reused=False)


def _current(store: SnapshotStore) -> SnapshotInfo | None:
    try:
        return store.get()
    except SnapshotNotFoundError:
        return None
