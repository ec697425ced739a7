"""Versioned, immutable data snapshots, written atomically.

A snapshot is a folder of parquet tables plus ``manifest.json`` (source, row counts, sha256 of
every file). It is written into a hidden temporary folder and renamed into place only when
complete; the ``CURRENT`` pointer is then replaced atomically. A failed write therefore leaves the
previous snapshot current, intact and readable.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pandas as pd
from pydantic import BaseModel, ConfigDict

from metarec.clock import utc_now
from metarec.digests import sha256_file
from metarec.errors import ChecksumMismatchError, SnapshotNotFoundError

MANIFEST = "manifest.json"
CURRENT = "CURRENT"


class SnapshotInfo(BaseModel):
    """What ``manifest.json`` records about a snapshot."""

    model_config = ConfigDict(frozen=True)

    snapshot_id: str
    source: str
    created_at: datetime
    row_counts: dict[str, int]
    file_sha256: dict[str, str]
    path: Path
    metadata: dict[str, str] = {}

    def table_path(self, name: str) -> Path:
        """Path of one table's parquet file."""
        return self.path / f"{name}.parquet"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _check_received(folder: Path, snapshot_id: str) -> None:
    """Check a received snapshot folder: its manifest names it and every file matches."""
    manifest = folder / MANIFEST
    recorded = json.loads(manifest.read_text()) if manifest.is_file() else {}
    if recorded.get("snapshot_id") != snapshot_id:
        raise SnapshotNotFoundError(
            f"The copy of snapshot {snapshot_id} has no manifest of its own.",
            fix="ingest the data again: `metarec data ingest` publishes a complete snapshot.",
        )
    for name, expected in recorded["file_sha256"].items():
        actual = sha256_file(folder / name) if (folder / name).is_file() else "missing"
        if actual != expected:
            raise ChecksumMismatchError(
                f"{snapshot_id}/{name}",
                expected=expected,
                actual=actual,
                fix="snapshots are immutable; ingest the data again.",
            )


class SnapshotStore:
    """The snapshots under one root folder."""

    def __init__(self, root: Path) -> None:
        """Open (not create) the store at ``root``."""
        self.root = root

    def write(
        self,
        tables: dict[str, pd.DataFrame],
        *,
        source: str,
        metadata: dict[str, str] | None = None,
    ) -> SnapshotInfo:
        """Write a new snapshot and make it current.

        Args:
            tables: Table name → data frame (written as ``<name>.parquet``).
            source: Where the data came from.
            metadata: Extra strings recorded in the manifest (e.g. the input's checksum).

        Returns:
            The new snapshot.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        created = utc_now()
        snapshot_id = f"{created:%Y%m%dT%H%M%S%fZ}-{source}"
        staging = self.root / f".tmp-{uuid.uuid4().hex}"
        staging.mkdir()
        try:
            hashes: dict[str, str] = {}
            for name, frame in tables.items():
                path = staging / f"{name}.parquet"
                frame.to_parquet(path, index=False)
                hashes[path.name] = sha256_file(path)
            manifest = {
                "snapshot_id": snapshot_id,
                "source": source,
                "created_at": created.isoformat(),
                "row_counts": {name: len(frame) for name, frame in tables.items()},
                "file_sha256": hashes,
                "metadata": metadata or {},
            }
            (staging / MANIFEST).write_text(json.dumps(manifest, indent=2))
            _fsync_dir(staging)
            final = self.root / snapshot_id
            staging.rename(final)
            self._set_current(snapshot_id)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return self.get(snapshot_id)

    def receive(
        self, snapshot_id: str, fill: Callable[[Path], None], *, make_current: bool = False
    ) -> SnapshotInfo:
        """Add a snapshot written elsewhere (say, fetched from the object store), verified.

        ``fill`` writes the manifest and the tables into an empty staging folder; every file is
        checked against the manifest's sha256 before the folder is renamed into place, so a
        failed or corrupt copy leaves nothing behind. A snapshot already here is kept as it is.

        Args:
            snapshot_id: Id of the snapshot (its folder name).
            fill: Writes the snapshot's files into the folder it is given.
            make_current: Also make it the current snapshot.

        Raises:
            ChecksumMismatchError: A file differs from the manifest.
            SnapshotNotFoundError: ``fill`` wrote no manifest, or one of another snapshot.
        """
        if not (self.root / snapshot_id / MANIFEST).is_file():
            self.root.mkdir(parents=True, exist_ok=True)
            staging = self.root / f".tmp-{uuid.uuid4().hex}"
            staging.mkdir()
            try:
                fill(staging)
                _check_received(staging, snapshot_id)
                _fsync_dir(staging)
                try:
                    staging.rename(self.root / snapshot_id)
                except OSError:  # another process received it first: keep that copy
                    if not (self.root / snapshot_id / MANIFEST).is_file():
                        raise
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        if make_current:
            self._set_current(snapshot_id)
        return self.get(snapshot_id)

    def set_current(self, snapshot_id: str) -> None:
        """Make a complete snapshot of this store the current one.

        Raises:
            SnapshotNotFoundError: It is not here.
        """
        self.get(snapshot_id)
        self._set_current(snapshot_id)

    def _set_current(self, snapshot_id: str) -> None:
        pointer = self.root / f".{CURRENT}.{uuid.uuid4().hex}"
        pointer.write_text(snapshot_id + "\n")
        os.replace(pointer, self.root / CURRENT)
        _fsync_dir(self.root)

    def current_id(self) -> str:
        """Id of the current snapshot.

        Raises:
            SnapshotNotFoundError: Nothing has been ingested yet.
        """
        pointer = self.root / CURRENT
        if not pointer.is_file():
            raise SnapshotNotFoundError(
                f"No data snapshot in {self.root}.",
                fix="ingest data first: metarec data ingest --source ml-100k --path ml-100k.zip",
            )
        return pointer.read_text().strip()

    def get(self, snapshot_id: str | None = None) -> SnapshotInfo:
        """Return a snapshot's manifest (default: the current one).

        Raises:
            SnapshotNotFoundError: The snapshot does not exist.
        """
        snapshot_id = snapshot_id or self.current_id()
        path = self.root / snapshot_id
        manifest = path / MANIFEST
        if not manifest.is_file():
            raise SnapshotNotFoundError(
                f"Snapshot {snapshot_id} not found in {self.root}.",
                fix="list snapshots with `metarec data snapshots` and pick an existing one.",
            )
        return SnapshotInfo(path=path, **json.loads(manifest.read_text()))

    def list(self) -> list[SnapshotInfo]:
        """All complete snapshots, oldest first."""
        if not self.root.is_dir():
            return []
        return sorted(
            (self.get(p.name) for p in self.root.iterdir() if (p / MANIFEST).is_file()),
            key=lambda info: info.created_at,
        )

    def read_table(
        self, name: str, *, snapshot_id: str | None = None, verify: bool = True
    ) -> pd.DataFrame:
        """Read one table of a snapshot, checking its sha256 against the manifest.

        Raises:
            SnapshotNotFoundError: The snapshot or the table does not exist.
            ChecksumMismatchError: The file changed since it was written.
        """
        info = self.get(snapshot_id)
        path = info.table_path(name)
        if path.name not in info.file_sha256 or not path.is_file():
            raise SnapshotNotFoundError(
                f"Table {name!r} not in snapshot {info.snapshot_id}.",
                fix=f"use one of: {', '.join(sorted(info.row_counts))}.",
            )
        if verify and sha256_file(path) != info.file_sha256[path.name]:
            raise ChecksumMismatchError(
                str(path),
                expected=info.file_sha256[path.name],
                actual=sha256_file(path),
                fix="snapshots are immutable; ingest the data again.",
            )
        return pd.read_parquet(path)
