"""Ingest inputs given as URIs: a MovieLens archive or folder, or a schema YAML, on a store.

``metarec data ingest --path`` and ``--schema`` take a local path or an fsspec URI (``s3://…``,
``gs://…``, ``file://…``). A ``file://`` URI is its local path; anything else is copied into the
home's download folder first (a folder of the archive's name, keyed by the URI), and read there.
A schema YAML's relative table paths stay relative to where the YAML is: on the store.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import fsspec
import yaml
from fsspec.implementations.local import LocalFileSystem

from metarec.digests import sha256_bytes
from metarec.errors import DataSourceNotFoundError

Input = str | os.PathLike[str]
_TABLES = ("interactions", "users", "items")


def is_uri(location: Input) -> bool:
    """Whether ``location`` is an fsspec URI (``s3://…``, ``file://…``) rather than a path."""
    return not isinstance(location, os.PathLike) and "://" in str(location)


def _on_store(location: Input) -> Path | tuple[str, fsspec.AbstractFileSystem, str]:
    """A path or ``file://`` URI as its local path; a URI on a store as (URI, file system, path)."""
    if not is_uri(location):
        return Path(location)
    uri = str(location)
    fs, path = fsspec.core.url_to_fs(uri)
    if isinstance(fs, LocalFileSystem):
        return Path(path)
    return uri, fs, path.rstrip("/")


def _missing(location: str) -> DataSourceNotFoundError:
    return DataSourceNotFoundError(
        location, fix="check the URI and that the pod's credentials (AWS_* env) can read it."
    )


def _staging(download_dir: Path, location: str) -> Path:
    """An empty folder for the copy of ``location``, named by its URI."""
    folder = download_dir / sha256_bytes(location.encode())[:16]
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


def local_input(location: Input, *, download_dir: Path) -> Path:
    """A local path holding ``location`` (an archive or a folder).

    A path or ``file://`` URI is used as it is; a URI on a store is copied into ``download_dir``.

    Raises:
        DataSourceNotFoundError: There is nothing at the URI.
    """
    resolved = _on_store(location)
    if isinstance(resolved, Path):
        return resolved
    uri, fs, path = resolved
    if not fs.exists(path):
        raise _missing(uri)
    target = _staging(download_dir, uri) / path.rpartition("/")[2]
    if fs.isdir(path):
        fs.get(path + "/", str(target), recursive=True)
    else:
        fs.get_file(path, str(target))
    return target


def local_schema(location: Input, *, download_dir: Path) -> Path:
    """A local schema YAML for ``location``.

    A path is used as it is; a URI's YAML is copied into ``download_dir`` with its relative table
    paths made URIs beside it.

    Raises:
        DataSourceNotFoundError: There is no YAML at the URI.
    """
    resolved = _on_store(location)
    if isinstance(resolved, Path):
        return resolved
    uri, fs, path = resolved
    try:
        raw = yaml.safe_load(fs.cat_file(path))
    except FileNotFoundError:
        raise _missing(uri) from None
    if isinstance(raw, dict):
        base = uri.rpartition("/")[0]
        for name in _TABLES:
            table = raw.get(name)
            if isinstance(table, dict) and isinstance(table.get("path"), str):
                table["path"] = _beside(table["path"], base=base)
    target = _staging(download_dir, uri) / path.rpartition("/")[2]
    target.write_text(yaml.safe_dump(raw, sort_keys=False))
    return target


def _beside(table: str, *, base: str) -> str:
    """A table location of a schema at ``base`` (a relative one is put under ``base``)."""
    if "://" in table or Path(table).is_absolute():
        return table
    return f"{base}/{table.removeprefix('./')}"
