"""Ingest a dataset from one of the supported sources into a new current snapshot."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path

from metarec.data.download import download, file_checksum
from metarec.data.movielens import read_ml1m, read_ml100k
from metarec.data.schema import Dataset
from metarec.data.snapshots import SnapshotInfo, SnapshotStore
from metarec.data.synthetic import SyntheticSpec, generate_synthetic
from metarec.data.table_source import read_table_source, table_input_identity
from metarec.data.tables import feature_tables
from metarec.digests import sha256_bytes
from metarec.errors import MetaRecError


class DataSource(StrEnum):
    """Supported dataset sources."""

    ML_100K = "ml-100k"
    ML_1M = "ml-1m"
    SYNTHETIC = "synthetic"
    TABLE = "table"


OFFICIAL_URLS = {
    DataSource.ML_100K: "https://files.grouplens.org/datasets/movielens/ml-100k.zip",
    DataSource.ML_1M: "https://files.grouplens.org/datasets/movielens/ml-1m.zip",
}


def read_source(
    source: DataSource,
    *,
    path: Path | None = None,
    url: str | None = None,
    checksum: str | None = None,
    download_dir: Path,
    synthetic: SyntheticSpec | None = None,
    schema: Path | None = None,
    on_download: Callable[[int, int | None], None] | None = None,
) -> Dataset:
    """Read a dataset from a local path, a URL (checksum verified), the generator or a schema.

    Args:
        source: Which dataset layout to read.
        path: Local zip archive or folder (MovieLens sources).
        url: Archive URL to download when ``path`` is not given.
        checksum: Expected ``md5:…``/``sha256:…`` of the download (default: the official one).
        download_dir: Where downloads are kept.
        synthetic: Generator settings (synthetic source).
        schema: The schema YAML declaring a team's tables (table source).
        on_download: Download progress callback.

    Returns:
        The dataset.

    Raises:
        MetaRecError: The input is missing, malformed, or fails its checksum.
    """
    if schema is not None and source is not DataSource.TABLE:
        raise MetaRecError(
            f"--schema is for --source table, not {source.value}.",
            fix="drop --schema, or pass --source table.",
        )
    if source is DataSource.SYNTHETIC:
        return generate_synthetic(synthetic)
    if source is DataSource.TABLE:
        if schema is None:
            raise MetaRecError(
                "--source table needs --schema.",
                fix="pass --schema schema.yaml (see docs/your-data.md).",
            )
        return read_table_source(schema)
    if path is not None and url is not None:
        raise MetaRecError("Both --path and --url were given.", fix="pass only one of them.")
    if path is None:
        url = url or OFFICIAL_URLS[source]
        path = download(
            url,
            download_dir / url.rstrip("/").rsplit("/", 1)[-1],
            checksum=checksum,
            on_progress=on_download,
        )
    reader = read_ml100k if source is DataSource.ML_100K else read_ml1m
    return reader(Path(path))


def input_identity(
    source: DataSource,
    *,
    path: Path | None = None,
    synthetic: SyntheticSpec | None = None,
    schema: Path | None = None,
) -> str:
    """A checksum of what an ingest reads: the archive, the folder's files, the spec, the tables.

    Two ingests with the same identity produce the same data, so a pipeline can skip the second.
    """
    if source is DataSource.SYNTHETIC:
        spec = (synthetic or SyntheticSpec()).model_dump_json()
        return "synthetic:" + sha256_bytes(spec.encode())
    if source is DataSource.TABLE:
        return table_input_identity(schema) if schema is not None else ""
    if path is None:
        return ""
    path = Path(path)
    if path.is_file():
        return file_checksum(path)
    digest = hashlib.sha256()
    for member in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(member.relative_to(path).as_posix().encode())
        digest.update(member.read_bytes())
    return f"sha256:{digest.hexdigest()}"


def write_snapshot(
    dataset: Dataset, snapshots: SnapshotStore, *, input_checksum: str = ""
) -> SnapshotInfo:
    """Derive the Feast source tables and write everything as the new current snapshot.

    The manifest's metadata holds the input checksum and the dataset's own metadata (a table
    source records its declared schema: feature names and types, label kind).
    """
    metadata = dict(dataset.metadata)
    if input_checksum:
        metadata["input_checksum"] = input_checksum
    return snapshots.write(feature_tables(dataset), source=dataset.source, metadata=metadata)
