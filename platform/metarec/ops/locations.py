"""Artifacts and their reports where a pipeline step leaves them: a local folder or a URI.

A step on a cluster hands the next one URIs on the object store (``s3://bucket/run/artifact``);
on a laptop, plain paths. Training, evaluation and registration read local folders, so an
artifact at a URI is fetched into a temporary folder (:func:`local_artifact`), and a trained
folder is uploaded to its URI with the model card last (:func:`publish_artifact`): the card marks
a complete artifact, so a reader never sees a card without every file it names.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import fsspec

from metarec.errors import ArtifactError
from metarec.features.training_set import Location, as_location, read_text
from metarec.registry.artifacts import CARD_FILE, inspect_artifact
from metarec.registry.card import card_from_json

if TYPE_CHECKING:
    from metarec.training.model_card import ModelCard

_URL_FIX = "pass the artifact URI that the training step returned (model_card.json inside it)."


def artifact_sibling(artifact: Location, suffix: str) -> Path | str:
    """The file beside an artifact folder, ``<folder><suffix>`` (a URI stays a URI).

    Files written there (evaluation, gate decision) are outside the folder, so its digest stays.
    """
    location = as_location(artifact)
    if isinstance(location, Path):
        return location.with_name(location.name + suffix)
    return location.rstrip("/") + suffix


def _card_location(artifact: Path | str) -> Path | str:
    if isinstance(artifact, Path):
        return artifact / CARD_FILE
    return f"{artifact.rstrip('/')}/{CARD_FILE}"


def read_artifact_card(artifact: Location) -> ModelCard | None:
    """The model card of a complete artifact (local or at a URI), or None when there is none.

    Raises:
        ArtifactError: The card is there but is not a valid model card.
    """
    location = _card_location(as_location(artifact))
    text = read_text(location)
    return None if text is None else card_from_json(text, where=str(location))


@contextmanager
def local_artifact(artifact: Location) -> Iterator[Path]:
    """A local folder holding the artifact: the folder itself, or a temporary copy of a URI's.

    The copy is removed when the block ends.

    Raises:
        ArtifactError: There is no artifact (no model card) at the URI.
    """
    location = as_location(artifact)
    if isinstance(location, Path):
        yield location
        return
    fs, base = fsspec.core.url_to_fs(location)
    base = base.rstrip("/")
    if not fs.exists(f"{base}/{CARD_FILE}"):
        raise ArtifactError(f"{location} holds no artifact (no {CARD_FILE}).", fix=_URL_FIX)
    with tempfile.TemporaryDirectory(prefix="metarec-artifact-") as tmp:
        folder = Path(tmp) / location.rstrip("/").rpartition("/")[2]
        for remote in fs.find(base):
            target = folder / remote[len(base) + 1 :]
            target.parent.mkdir(parents=True, exist_ok=True)
            fs.get_file(remote, str(target))
        yield folder


def _remote_sha256(fs: Any, path: str) -> str:
    with fs.open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _put_verified(fs: Any, source: Path, target: str, *, sha256: str) -> None:
    """Upload one file and read it back; a copy that differs is removed and refused."""
    fs.put_file(str(source), target)
    stored = _remote_sha256(fs, target)
    if stored != sha256:
        fs.rm_file(target)
        raise ArtifactError(
            f"Uploaded {target} has sha256 {stored}, expected {sha256}.",
            fix="check the object store (quota, a flaky endpoint) and run the step again.",
        )


def publish_artifact(folder: Path, target: str) -> str:
    """Upload an artifact folder to the URI ``target``, every file verified, the card last.

    What an interrupted upload of the artifact left at ``target`` (some of its files, no card:
    not an artifact) is overwritten; anything else there is refused, never deleted.

    Args:
        folder: The local artifact folder (checked as the registry checks it).
        target: Where it goes (``s3://bucket/run/artifact``).

    Returns:
        ``target``.

    Raises:
        ArtifactError: The folder is not a valid artifact, ``target`` holds other files, or a
            copy does not read back.
    """
    files = inspect_artifact(folder).files
    fs, base = fsspec.core.url_to_fs(target)
    base = base.rstrip("/")
    foreign = sorted(
        name for name in (path[len(base) + 1 :] for path in fs.find(base)) if name not in files
    )
    if foreign:
        raise ArtifactError(
            f"{target} already holds files that are not this artifact's ({', '.join(foreign)}).",
            fix="write the artifact to a new URI, or remove those files first.",
        )
    for name in sorted(files, key=lambda item: (item == CARD_FILE, item)):
        remote = f"{base}/{name}"
        fs.makedirs(remote.rpartition("/")[0], exist_ok=True)
        _put_verified(fs, folder / name, remote, sha256=files[name])
    return target


def store_file(source: Path, target: Location) -> Path | str:
    """Put a local file at ``target``: uploaded to a URI, or copied to a local path.

    Returns:
        ``target`` (a URI string or a local path).
    """
    location = as_location(target)
    if isinstance(location, Path):
        location.parent.mkdir(parents=True, exist_ok=True)
        location.write_bytes(Path(source).read_bytes())
        return location
    fs, path = fsspec.core.url_to_fs(location)
    fs.put_file(str(source), path)
    return location
