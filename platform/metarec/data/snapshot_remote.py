"""Snapshots on the object store: published under ``<root>/<snapshot id>/``, fetched into a home.

On a cluster every pod has its own (``emptyDir``) MetaRec home, so the ingest pod publishes the
snapshot it wrote to the offline root (``feast.offline_root``, e.g. ``s3://bucket/offline``), where
the Feast sources read it, and any later pod fetches it into its own home:

- ``<root>/<snapshot id>/<table>.parquet``: every table, each read back and checked against the
  sha256 the manifest records;
- ``<root>/<snapshot id>/manifest.json``: written after the tables, so a manifest on the store
  means a complete snapshot;
- ``<root>/CURRENT``: the current snapshot's id, written after the manifest (one object put).

A fetch copies the manifest and tables into the local store, verified, with
:meth:`~metarec.data.snapshots.SnapshotStore.receive`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import fsspec

from metarec.data.snapshots import CURRENT, MANIFEST, SnapshotInfo, SnapshotStore
from metarec.digests import sha256_file
from metarec.errors import ChecksumMismatchError, SnapshotNotFoundError

_INGEST_FIX = (
    "ingest data first: `metarec data ingest` publishes it when feast.offline_root is set."
)


def _sha256(fs: Any, path: str) -> str:
    with fs.open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


class RemoteSnapshots:
    """The snapshots under one object-store prefix (any fsspec URL, or a local folder)."""

    def __init__(self, root: str) -> None:
        """Open (not create) the prefix ``root`` (``s3://bucket/offline``)."""
        self.root = root.rstrip("/")
        self._fs, base = fsspec.core.url_to_fs(self.root)
        self._base = base.rstrip("/")

    def url(self, snapshot_id: str) -> str:
        """Where a snapshot's files are: ``<root>/<snapshot id>``."""
        return f"{self.root}/{snapshot_id}"

    def publish(self, info: SnapshotInfo, *, make_current: bool = True) -> str:
        """Upload a local snapshot: tables (each read back and verified), manifest, ``CURRENT``.

        A snapshot whose manifest is already on the store is complete and is not uploaded again.

        Returns:
            The snapshot's URL.

        Raises:
            ChecksumMismatchError: A copy on the store differs from the local file.
        """
        folder = f"{self._base}/{info.snapshot_id}"
        if not self._fs.exists(f"{folder}/{MANIFEST}"):
            self._fs.makedirs(folder, exist_ok=True)
            for name, expected in sorted(info.file_sha256.items()):
                self._put_verified(info.path / name, f"{folder}/{name}", sha256=expected)
            manifest = info.path / MANIFEST
            self._put_verified(manifest, f"{folder}/{MANIFEST}", sha256=sha256_file(manifest))
        if make_current:
            self._fs.pipe_file(f"{self._base}/{CURRENT}", (info.snapshot_id + "\n").encode())
        return self.url(info.snapshot_id)

    def _put_verified(self, source: Path, target: str, *, sha256: str) -> None:
        self._fs.put_file(str(source), target)
        stored = _sha256(self._fs, target)
        if stored != sha256:
            self._fs.rm_file(target)
            raise ChecksumMismatchError(
                f"{self.root}/{target.rpartition(self._base + '/')[2]}",
                expected=sha256,
                actual=stored,
                fix="check the object store (quota, a flaky endpoint) and ingest again.",
            )

    def current_id(self) -> str:
        """Id of the snapshot ``CURRENT`` names.

        Raises:
            SnapshotNotFoundError: Nothing has been published there.
        """
        try:
            text = self._fs.cat_file(f"{self._base}/{CURRENT}").decode().strip()
        except FileNotFoundError:
            text = ""
        if not text:
            raise SnapshotNotFoundError(f"No data snapshot in {self.root}.", fix=_INGEST_FIX)
        return text

    def manifest(self, snapshot_id: str) -> dict[str, Any]:
        """The manifest of a complete snapshot on the store.

        Raises:
            SnapshotNotFoundError: It has no manifest there (absent or incomplete).
        """
        try:
            return dict(json.loads(self._fs.cat_file(f"{self._base}/{snapshot_id}/{MANIFEST}")))
        except FileNotFoundError:
            raise SnapshotNotFoundError(
                f"Snapshot {snapshot_id} not found in {self.root} (no {MANIFEST}).",
                fix=_INGEST_FIX,
            ) from None

    def fetch(
        self, snapshot_id: str, into: SnapshotStore, *, make_current: bool = False
    ) -> SnapshotInfo:
        """Copy a snapshot into a local store (verified against its manifest).

        Raises:
            SnapshotNotFoundError: It is not (completely) on the store.
            ChecksumMismatchError: A copied file differs from the manifest.
        """
        recorded = self.manifest(snapshot_id)
        folder = f"{self._base}/{snapshot_id}"

        def fill(staging: Path) -> None:
            for name in recorded["file_sha256"]:
                self._fs.get_file(f"{folder}/{name}", str(staging / name))
            (staging / MANIFEST).write_text(json.dumps(recorded, indent=2))

        return into.receive(snapshot_id, fill, make_current=make_current)


def remote_snapshots(offline_root: str) -> RemoteSnapshots | None:
    """The published snapshots under ``feast.offline_root``, or None when it is not set."""
    return RemoteSnapshots(offline_root) if offline_root else None


def resolve_snapshot(
    store: SnapshotStore, remote: RemoteSnapshots | None, snapshot_id: str | None = None
) -> SnapshotInfo:
    """A snapshot (default: the current one) in the local store, fetched when missing there.

    With an offline root, the current snapshot is the one its ``CURRENT`` names (the last one
    published by any pod); without, the local store's.

    Raises:
        SnapshotNotFoundError: It is neither here nor on the store.
        ChecksumMismatchError: The fetched copy differs from its manifest.
    """
    if remote is None:
        return store.get(snapshot_id)
    current = snapshot_id is None
    snapshot_id = snapshot_id or remote.current_id()
    try:
        info = store.get(snapshot_id)
    except SnapshotNotFoundError:
        return remote.fetch(snapshot_id, store, make_current=current)
    if current:
        store.set_current(snapshot_id)
    return info
