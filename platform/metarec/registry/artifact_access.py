"""Reading a registered version's artifact: every byte checksum-verified before it is returned.

The sha256 of every file comes from the registry database (recorded at registration), never
from beside the stored files. Weights are parsed by ``safetensors`` only and the model card into
a typed :class:`~metarec.training.model_card.ModelCard`.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from metarec.errors import ArtifactError
from metarec.registry.artifacts import (
    CARD_FILE,
    RANKER_WEIGHTS_FILE,
    WEIGHTS_FILE,
    ArtifactStore,
    check_card_hashes,
    check_safetensors_header,
)
from metarec.registry.card import card_from_json
from metarec.registry.queries import get_version
from metarec.registry.sessions import Sessions
from metarec.registry.types import VersionInfo, VersionRef

if TYPE_CHECKING:
    import torch

    from metarec.training.model_card import ModelCard

_REREGISTER_FIX = (
    "do not serve this version: register the artifact exactly as `metarec train` wrote it, or "
    "serve or roll back to another version."
)


def read_file(db: Sessions, store: ArtifactStore, ref: VersionRef, name: str) -> bytes:
    """One file of a version's artifact, checksum-verified before it is returned.

    Raises:
        ArtifactError: The version has no such file, or the stored file is missing.
        ArtifactChecksumError: The stored bytes do not match the registered sha256.
    """
    info = get_version(db, ref)
    if name not in info.files:
        raise ArtifactError(
            f"{ref.tag} has no file {name!r}.", fix=f"its files are {sorted(info.files)}."
        )
    return store.read_verified(info.artifact_uri, name, sha256=info.files[name], version=ref.tag)


def read_card(db: Sessions, store: ArtifactStore, ref: VersionRef) -> ModelCard:
    """The version's ``model_card.json``, checksum-verified and typed.

    Raises:
        ArtifactError: The stored card is not JSON or not a valid model card of this format.
        ArtifactChecksumError: The stored card does not match the registered sha256.
    """
    data = read_file(db, store, ref, CARD_FILE)
    return card_from_json(data, where=f"{ref.tag}/{CARD_FILE}")


def verify(db: Sessions, store: ArtifactStore, ref: VersionRef) -> VersionInfo:
    """Re-hash every stored file of a version, then check them against its model card.

    A version registered before registration checked the card's hashes may hold weights its
    card does not describe: it is refused here, before anything tries to load it.

    Raises:
        ArtifactChecksumError: A stored file does not match the registered sha256.
        ArtifactError: A stored file is missing, the card is not a valid model card, or a file
            the card lists is missing or differs from the card's sha256.
    """
    info = get_version(db, ref)
    card_bytes = None
    for name, sha in info.files.items():
        data = store.read_verified(info.artifact_uri, name, sha256=sha, version=ref.tag)
        if name == CARD_FILE:
            card_bytes = data
    if card_bytes is None:
        raise ArtifactError(f"{ref.tag} has no {CARD_FILE}.", fix=_REREGISTER_FIX)
    card = card_from_json(card_bytes, where=f"{ref.tag}/{CARD_FILE}")
    check_card_hashes(card, info.files, where=ref.tag, fix=_REREGISTER_FIX)
    return info


def fetch(db: Sessions, store: ArtifactStore, ref: VersionRef, dest: Path | None = None) -> Path:
    """Copy a version's artifact into ``dest`` (default: a new temporary folder), verified."""
    info = get_version(db, ref)
    target = Path(dest) if dest is not None else Path(tempfile.mkdtemp(prefix="metarec-"))
    return store.fetch(info.artifact_uri, files=info.files, version=ref.tag, dest=target)


def load_weights(db: Sessions, store: ArtifactStore, ref: VersionRef) -> dict[str, torch.Tensor]:
    """The version's weights as tensors: checksum verified, parsed by safetensors only."""
    from safetensors.torch import load

    info = get_version(db, ref)
    name = WEIGHTS_FILE if WEIGHTS_FILE in info.files else RANKER_WEIGHTS_FILE
    data = read_file(db, store, ref, name)
    check_safetensors_header(data, where=f"{ref.tag}/{name}")
    return load(data)
