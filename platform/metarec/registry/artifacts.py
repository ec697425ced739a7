"""Model artifacts: inspection, content digests, and the fsspec-backed artifact store.

An artifact is a folder with ``model.safetensors`` (weights) and ``model_card.json`` (what the
model is and how it was made), plus optional extra files (reports, configs). A version trained on
implicit events has no rating model: its weights file is ``ranker.safetensors``
(:func:`card_weights_file`). Every file's sha256
is recorded at registration; every load re-hashes the bytes it returns and refuses a mismatch.

Nothing here ever unpickles: weights are only read by ``safetensors``, which parses a JSON header
and raw tensor bytes and cannot execute code. Files with pickle-style extensions are refused.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import fsspec

from metarec.digests import sha256_bytes, sha256_file
from metarec.errors import ArtifactChecksumError, ArtifactError
from metarec.registry.card import card_from_json

if TYPE_CHECKING:
    from metarec.training.model_card import ModelCard

WEIGHTS_FILE = "model.safetensors"
RANKER_WEIGHTS_FILE = "ranker.safetensors"
CARD_FILE = "model_card.json"
# Formats that can execute code when loaded: never accepted in an artifact.
UNSAFE_SUFFIXES = (".pkl", ".pickle", ".pt", ".pth", ".bin", ".ckpt", ".joblib", ".npy")
_MAX_SAFETENSORS_HEADER = 100 * 1024 * 1024
_FOLDER_FIX = "pass the folder that training wrote (model.safetensors + model_card.json)."
_CARD_HASH_FIX = (
    "register the folder exactly as `metarec train` wrote it (restore the original files, or "
    "retrain); never edit weights or the card by hand."
)


@dataclass(frozen=True)
class ArtifactManifest:
    """What an artifact folder holds: relative file name → sha256, the digest and the card."""

    files: dict[str, str]
    digest: str
    card: ModelCard


def manifest_digest(files: dict[str, str]) -> str:
    """The artifact digest: sha256 over the sorted ``name sha256`` lines of its files."""
    lines = "".join(f"{name} {sha}\n" for name, sha in sorted(files.items()))
    return sha256_bytes(lines.encode())


def check_safetensors_header(data: bytes, *, where: str) -> dict[str, Any]:
    """Parse a safetensors header without loading tensors; refuse anything else (e.g. pickle).

    Args:
        data: The first bytes of the file (at least the header).
        where: The file, for the error message.

    Returns:
        The header (tensor name → dtype, shape, offsets).

    Raises:
        ArtifactError: The bytes are not a safetensors file.
    """
    fix = "save the weights with safetensors (safetensors.torch.save_file); pickle is refused."
    if len(data) < 8:
        raise ArtifactError(f"{where} is not a safetensors file (too short).", fix=fix)
    (size,) = struct.unpack("<Q", data[:8])
    if size <= 0 or size > _MAX_SAFETENSORS_HEADER or len(data) < 8 + size:
        raise ArtifactError(f"{where} is not a safetensors file (bad header length).", fix=fix)
    try:
        header = json.loads(data[8 : 8 + size])
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(
            f"{where} is not a safetensors file (header is not JSON).", fix=fix
        ) from exc
    if not isinstance(header, dict):
        raise ArtifactError(f"{where} is not a safetensors file (header is not a map).", fix=fix)
    return header


def inspect_artifact(artifact_dir: Path) -> ArtifactManifest:
    """Check an artifact folder and compute its manifest.

    Args:
        artifact_dir: The folder (``model.safetensors``, ``model_card.json``, extras).

    Returns:
        The manifest: per-file sha256, digest and the typed model card.

    Raises:
        ArtifactError: Missing files, unsafe files, links, unreadable weights, a card that
            is not a valid :class:`~metarec.training.model_card.ModelCard`, or a file whose
            sha256 differs from the card's (``weights_sha256``, ``files``).
    """
    artifact_dir = Path(artifact_dir)
    _check_required_files(artifact_dir, CARD_FILE)
    card = read_card_file(artifact_dir / CARD_FILE)
    weights = card_weights_file(card)
    _check_required_files(artifact_dir, weights)
    files = _hash_files(artifact_dir)
    _check_weights_header(artifact_dir / weights)
    check_card_hashes(card, files, where=artifact_dir)
    return ArtifactManifest(files=files, digest=manifest_digest(files), card=card)


def card_hashes(card: ModelCard) -> dict[str, str]:
    """Every file the card vouches for → its sha256: ``files`` and the weights' ``weights_sha256``.

    Raises:
        ArtifactError: The card records two different sha256s for its weights file.
    """
    weights = card_weights_file(card)
    listed = card.files.get(weights)
    if listed is not None and listed != card.weights_sha256:
        raise ArtifactError(
            f"The model card records two sha256s for {weights} (weights_sha256 "
            f"{card.weights_sha256[:12]}, files {listed[:12]}).",
            fix=_CARD_HASH_FIX,
        )
    return {**card.files, weights: card.weights_sha256}


def check_card_hashes(
    card: ModelCard, files: dict[str, str], *, where: Path | str, fix: str = _CARD_HASH_FIX
) -> None:
    """Refuse an artifact whose files are not those its card describes.

    Args:
        card: The artifact's model card.
        files: Relative file name → sha256 of the files actually there.
        where: The artifact (folder or version tag), named in errors.
        fix: What the user should do about a mismatch.

    Raises:
        ArtifactError: A file the card lists is missing, or its sha256 differs from the card's.
    """
    for name, expected in sorted(card_hashes(card).items()):
        actual = files.get(name)
        if actual is None:
            raise ArtifactError(
                f"{where}: the model card lists {name}, which the artifact does not hold.",
                fix=fix,
            )
        if actual != expected:
            raise ArtifactError(
                f"{where}/{name}: sha256 {actual} does not match the model card ({expected}); "
                "the file was changed or replaced after training.",
                fix=fix,
            )


def read_card_file(path: Path) -> ModelCard:
    """Read ``model_card.json`` as a typed :class:`~metarec.training.model_card.ModelCard`.

    Raises:
        ArtifactError: The file is not JSON, or not a valid model card.
    """
    return card_from_json(Path(path).read_bytes(), where=str(path))


def card_weights_file(card: ModelCard) -> str:
    """The weights file an artifact of ``card``'s kind must hold.

    Ratings: the rating model's; implicit events: the ranker's.
    """
    return WEIGHTS_FILE if card.predicts_ratings else RANKER_WEIGHTS_FILE


def _check_required_files(artifact_dir: Path, *names: str) -> None:
    if not artifact_dir.is_dir():
        raise ArtifactError(f"Artifact folder {artifact_dir} does not exist.", fix=_FOLDER_FIX)
    missing = [name for name in names if not (artifact_dir / name).is_file()]
    if missing:
        raise ArtifactError(
            f"Artifact folder {artifact_dir} lacks {', '.join(missing)}.", fix=_FOLDER_FIX
        )


def _hash_files(artifact_dir: Path) -> dict[str, str]:
    """Relative name → sha256 of every file; links and pickle-style files are refused."""
    files: dict[str, str] = {}
    for path in sorted(artifact_dir.rglob("*")):
        if path.is_symlink():
            raise ArtifactError(
                f"{path} is a symbolic link.", fix="copy the file into the artifact folder."
            )
        if path.is_dir():
            continue
        if path.suffix.lower() in UNSAFE_SUFFIXES:
            raise ArtifactError(
                f"{path} has a pickle-style format ({path.suffix}), which can execute code "
                "when loaded.",
                fix="remove it; MetaRec artifacts hold safetensors weights and JSON only.",
            )
        files[path.relative_to(artifact_dir).as_posix()] = sha256_file(path)
    return files


def _check_weights_header(weights: Path) -> None:
    """Refuse weights that are not safetensors, reading only the header."""
    with weights.open("rb") as handle:
        head = handle.read(8)
        if len(head) == 8:
            (size,) = struct.unpack("<Q", head)
            head += handle.read(min(size, _MAX_SAFETENSORS_HEADER))
    check_safetensors_header(head, where=str(weights))


class ArtifactStore:
    """Stores artifact folders under a root (local folder or fsspec URL), content-addressed.

    Layout: ``<root>/registry/<model>/<digest>/<files>``. Writing the same artifact twice is
    idempotent. Reads always verify sha256.
    """

    def __init__(self, *, root: str) -> None:
        """Create a store.

        Args:
            root: Local folder or fsspec URL (``s3://bucket/prefix``, ``memory://x``).
        """
        self.root = str(root)
        self._fs, self._root_path = fsspec.core.url_to_fs(self.root)

    def location(self, *, model: str, digest: str) -> str:
        """The URI an artifact is (or will be) stored at."""
        path = f"{self._root_path.rstrip('/')}/registry/{model}/{digest}"
        return self._fs.unstrip_protocol(path)

    def put(self, artifact_dir: Path, *, model: str, manifest: ArtifactManifest) -> str:
        """Copy an artifact folder into the store (skipping files already there and intact).

        Args:
            artifact_dir: The local folder.
            model: Registered model name.
            manifest: Its manifest from :func:`inspect_artifact`.

        Returns:
            The artifact URI.

        Raises:
            ArtifactError: A stored copy does not read back with the expected checksum.
        """
        uri = self.location(model=model, digest=manifest.digest)
        fs, base = fsspec.core.url_to_fs(uri)
        for name, sha in manifest.files.items():
            target = f"{base}/{name}"
            if fs.exists(target) and self._hash_remote(fs, target) == sha:
                continue
            fs.makedirs(target.rsplit("/", 1)[0], exist_ok=True)
            fs.put_file(str(Path(artifact_dir) / name), target)
            stored = self._hash_remote(fs, target)
            if stored != sha:
                raise ArtifactError(
                    f"Stored copy {target} has sha256 {stored}, expected {sha}.",
                    fix="check the artifact storage (disk full, flaky object store) and retry.",
                )
        return uri

    @staticmethod
    def _hash_remote(fs: Any, path: str) -> str:
        """Hex sha256 of a stored file, streamed (any fsspec file system)."""
        with fs.open(path, "rb") as handle:
            return hashlib.file_digest(handle, "sha256").hexdigest()

    def read_verified(self, uri: str, name: str, *, sha256: str, version: str) -> bytes:
        """Read one stored file and verify its checksum before returning a single byte.

        Args:
            uri: The artifact URI.
            name: File name inside the artifact.
            sha256: Expected sha256 (from the registry).
            version: The version's tag, named in errors.

        Returns:
            The file's bytes.

        Raises:
            ArtifactChecksumError: The bytes do not match (tampered or corrupted).
            ArtifactError: The file is missing.
        """
        fs, base = fsspec.core.url_to_fs(uri)
        target = f"{base}/{name}"
        try:
            with fs.open(target, "rb") as handle:
                data = handle.read()
        except FileNotFoundError as exc:
            raise ArtifactError(
                f"Model version {version}: stored file {target} is missing.",
                fix="restore the artifact storage or roll back to another version.",
            ) from exc
        actual = sha256_bytes(data)
        if actual != sha256:
            raise ArtifactChecksumError(version, path=target, expected=sha256, actual=actual)
        return data

    def fetch(self, uri: str, *, files: dict[str, str], version: str, dest: Path) -> Path:
        """Copy a stored artifact into ``dest``, verifying every file; nothing is left on error.

        Args:
            uri: The artifact URI.
            files: File name → expected sha256.
            version: The version's tag, named in errors.
            dest: The folder to create (must not exist or be empty).

        Returns:
            ``dest``.
        """
        contents = {
            name: self.read_verified(uri, name, sha256=sha, version=version)
            for name, sha in files.items()
        }
        dest = Path(dest)
        for name, data in contents.items():
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        return dest


def verify_directory(directory: Path, *, files: dict[str, str], version: str) -> None:
    """Verify a local copy of an artifact (e.g. a BentoML model folder) against the registry.

    Args:
        directory: The folder holding the artifact files.
        files: File name → expected sha256 (from the registry).
        version: The version's tag, named in errors.

    Raises:
        ArtifactChecksumError: A file does not match.
        ArtifactError: A file is missing.
    """
    for name, sha in files.items():
        path = Path(directory) / name
        if not path.is_file():
            raise ArtifactError(
                f"Model version {version}: {path} is missing.",
                fix="re-export the version from the registry.",
            )
        actual = sha256_file(path)
        if actual != sha:
            raise ArtifactChecksumError(version, path=str(path), expected=sha, actual=actual)
