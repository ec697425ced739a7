"""Model artifacts: a directory with ``model.safetensors`` and ``model_card.json``.

Beside them, optionally: the non-meta global model, the served ranker with its item prior, and
the meta-learned factor fold-in (``factor_model.safetensors``). A version trained on implicit
events (``card.label == "event"``) has no rating model: its weights are the ranker and its item
prior alone.

No pickle anywhere: weights are written and read with ``safetensors`` only. The card holds
everything needed to rebuild the model alone (architecture, encoder vocabularies, inner loop)
plus its lineage and metrics, and the sha256 of every weights file, verified before parsing.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from pydantic import ValidationError
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from metarec.digests import sha256_file
from metarec.errors import ArtifactError
from metarec.learning.factor_model import FactorConfig, FactorModel
from metarec.learning.item_models import EASE
from metarec.learning.model import MeLU, ModelConfig
from metarec.learning.ranker import Ranker, RankerConfig
from metarec.training.model_card import FORMAT_VERSION, ModelCard

WEIGHTS = "model.safetensors"
GLOBAL_WEIGHTS = "global_model.safetensors"
RANKER_WEIGHTS = "ranker.safetensors"
ITEM_PRIOR = "item_prior.safetensors"
FACTOR_WEIGHTS = "factor_model.safetensors"
CARD = "model_card.json"

ModuleT = TypeVar("ModuleT", bound=torch.nn.Module)
ConfigT = TypeVar("ConfigT")


@dataclass(frozen=True)
class RankerParts:
    """The served ranker's weights: the meta-learned model and the EASE item-item prior."""

    model: Ranker
    ease: EASE
    item_ids: np.ndarray  # (I,) the catalogue order of the prior's rows and columns (int or text)


def _state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}


def save_artifact(
    out: Path,
    *,
    model: MeLU | None,
    global_model: MeLU | None,
    card: dict[str, Any],
    ranker: RankerParts | None = None,
    factor_model: FactorModel | None = None,
    extras: dict[str, bytes] | None = None,
) -> ModelCard:
    """Write an artifact directory atomically (a temporary sibling renamed into place).

    Args:
        out: Directory to create (replaced if it exists).
        model: The meta-trained rating model; None for a version trained on implicit events
            (``card["label"] == "event"``), whose weights are the ranker's alone.
        global_model: The non-meta baseline model (same architecture), stored beside it.
        card: Card fields except ``model``, ``weights_sha256``, ``files``, ``format_version``.
        ranker: The served ranker's weights (``card["ranker"]`` describes them), if any.
        factor_model: The meta-learned factor fold-in, if any; its architecture is recorded in
            ``card["factor_model"]["config"]`` (other entries of ``card["factor_model"]``, e.g.
            its training report, are kept).
        extras: Other files (name → bytes) written beside the weights and listed in the card's
            ``files`` (e.g. the drift reference, ``drift_reference.json``).

    Returns:
        The written card.
    """
    if model is None and ranker is None:
        raise ArtifactError(
            "An artifact needs weights: a rating model, or (trained on events) a ranker.",
            fix="train with ranker: true when the training set holds implicit events.",
        )
    out = Path(out)
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    files = {} if model is None else {WEIGHTS: _write(tmp / WEIGHTS, _state(model))}
    if global_model is not None:
        files[GLOBAL_WEIGHTS] = _write(tmp / GLOBAL_WEIGHTS, _state(global_model))
    if ranker is not None:
        files.update(_write_ranker(tmp, ranker))
        card = _with_text_item_ids(card, ranker)
    if factor_model is not None:
        files[FACTOR_WEIGHTS] = _write(tmp / FACTOR_WEIGHTS, _state(factor_model))
        factor_entry = {**(card.get("factor_model") or {}), "config": factor_model.config.to_dict()}
        card = {**card, "factor_model": factor_entry}
    files.update(_write_extras(tmp, extras or {}))
    written = ModelCard(
        **{**card, "label": "rating" if model is not None else "event"},
        model={} if model is None else model.config.to_dict(),
        weights_sha256=files[WEIGHTS if model is not None else RANKER_WEIGHTS],
        files=files,
        format_version=FORMAT_VERSION,
    )
    (tmp / CARD).write_text(written.model_dump_json(indent=2))
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return written


def _write_extras(folder: Path, extras: dict[str, bytes]) -> dict[str, str]:
    """Write each extra file into ``folder``; its name → sha256, for the card's ``files``."""
    for name, data in extras.items():
        (folder / name).write_bytes(data)
    return {name: sha256_file(folder / name) for name in extras}


def _with_text_item_ids(card: dict[str, Any], ranker: RankerParts) -> dict[str, Any]:
    """The card with the ranker's catalogue as a team's text ids (integer ids: unchanged)."""
    if np.issubdtype(np.asarray(ranker.item_ids).dtype, np.integer):
        return card
    text_ids = [str(i) for i in ranker.item_ids]
    return {**card, "ranker": {**(card.get("ranker") or {}), "item_ids": text_ids}}


def _write(file: Path, tensors: dict[str, torch.Tensor]) -> str:
    """Write ``tensors`` as a safetensors file; return its sha256 (for the card)."""
    save_file(tensors, str(file), metadata={"format": "pt"})
    return sha256_file(file)


def _write_ranker(directory: Path, ranker: RankerParts) -> dict[str, str]:
    """Write the served ranker's weights and its EASE item prior; return their sha256s."""
    ids = np.asarray(ranker.item_ids)
    if not np.issubdtype(ids.dtype, np.integer):  # text ids: positions here, the ids in the card
        ids = np.arange(1, len(ids) + 1)
    prior = {
        "ease": torch.from_numpy(np.ascontiguousarray(ranker.ease.weights())),
        "item_ids": torch.from_numpy(np.ascontiguousarray(ids, dtype=np.int64)),
    }
    return {
        RANKER_WEIGHTS: _write(directory / RANKER_WEIGHTS, _state(ranker.model)),
        ITEM_PRIOR: _write(directory / ITEM_PRIOR, prior),
    }


def read_card(path: Path) -> ModelCard:
    """Read and validate ``model_card.json`` of an artifact directory.

    Raises:
        ArtifactError: Missing, not JSON, an unknown format version or invalid fields.
    """
    path = Path(path)
    card_path = path / CARD
    fix = (
        "pass an artifact directory written by `metarec train` "
        "(model.safetensors + model_card.json)."
    )
    if not card_path.is_file():
        raise ArtifactError(f"{path}: no {CARD} in the artifact.", fix=fix)
    try:
        data = json.loads(card_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{card_path}: not a JSON model card ({exc}).", fix=fix) from exc
    if not isinstance(data, dict) or data.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(
            f"{card_path}: unsupported format_version "
            f"{data.get('format_version') if isinstance(data, dict) else None!r} "
            f"(this MetaRec reads {FORMAT_VERSION}).",
            fix="retrain the model with this MetaRec version, or use the matching MetaRec.",
        )
    try:
        return ModelCard.model_validate(data)
    except ValidationError as exc:
        raise ArtifactError(f"{card_path}: invalid model card ({exc}).", fix=fix) from exc


FIX_WEIGHTS = "restore the artifact from the registry or retrain; never edit weights by hand."


def _read_verified(path: Path, name: str, expected_sha: str) -> dict[str, torch.Tensor]:
    """A safetensors file of the artifact, parsed only after its sha256 matched the card."""
    file = path / name
    fix = FIX_WEIGHTS
    if not file.is_file():
        raise ArtifactError(f"{file}: weights file missing.", fix=fix)
    actual = sha256_file(file)
    if actual != expected_sha:
        raise ArtifactError(
            f"{file}: sha256 {actual} does not match the model card ({expected_sha}); the "
            "weights were changed or replaced.",
            fix=fix,
        )
    try:
        return load_file(str(file), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise ArtifactError(
            f"{file}: not a safetensors file ({exc}); MetaRec never loads pickle.", fix=fix
        ) from exc


def _filled(model: ModuleT, path: Path, name: str, expected_sha: str) -> ModuleT:
    """``model`` with the verified weights of ``path / name`` loaded (strict, eval mode)."""
    state = _read_verified(path, name, expected_sha)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ArtifactError(
            f"{path / name}: weights do not fit the architecture in the card ({exc}).",
            fix=FIX_WEIGHTS,
        ) from exc
    return model.eval()


def _architecture(what: str, build: Callable[[], ConfigT]) -> ConfigT:
    """The architecture ``build`` parses from the card (``what`` names it in the error)."""
    try:
        return build()
    except (TypeError, KeyError, ValueError) as exc:
        raise ArtifactError(
            f"model card: invalid {what} ({exc}).",
            fix="retrain the model with `metarec train`.",
        ) from exc


def _require_listed(path: Path, card: ModelCard, what: str, *names: str) -> None:
    """Every file of ``names`` is listed in the card (which describes ``what``)."""
    for name in names:
        if name not in card.files:
            raise ArtifactError(
                f"{path}: the card describes {what} but lists no {name}.", fix=FIX_WEIGHTS
            )


def load_ranker(path: Path, card: ModelCard) -> RankerParts | None:
    """The served ranker stored in the artifact (checksums verified), or None without one.

    Raises:
        ArtifactError: A file is missing, altered, not safetensors, or does not fit the
            card's ranker architecture.
    """
    ranker = card.ranker
    if ranker is None:
        return None
    path = Path(path)
    _require_listed(path, card, "a ranker", RANKER_WEIGHTS, ITEM_PRIOR)
    config = _architecture("ranker architecture", lambda: RankerConfig.from_dict(ranker["config"]))
    model = _filled(Ranker(config), path, RANKER_WEIGHTS, card.files[RANKER_WEIGHTS])
    prior = _read_verified(path, ITEM_PRIOR, card.files[ITEM_PRIOR])
    if set(prior) != {"ease", "item_ids"}:
        raise ArtifactError(f"{path / ITEM_PRIOR}: unexpected tensors.", fix=FIX_WEIGHTS)
    item_ids = prior["item_ids"].numpy()
    if "item_ids" in ranker:  # a team's text ids, in catalogue order
        item_ids = np.asarray(ranker["item_ids"], dtype=object)
        if len(item_ids) != len(prior["item_ids"]):
            raise ArtifactError(
                f"{path}: the card lists {len(item_ids)} item ids for a catalogue of "
                f"{len(prior['item_ids'])}.",
                fix=FIX_WEIGHTS,
            )
    return RankerParts(
        model=model, ease=EASE.from_weights(prior["ease"].numpy()), item_ids=item_ids
    )


def load_factor_model(path: Path, card: ModelCard) -> FactorModel | None:
    """The meta-learned factor fold-in stored in the artifact, or None without one.

    Its file's sha256 is checked against the card before it is parsed (``safetensors`` only).

    Raises:
        ArtifactError: The file is missing, altered, not safetensors, or does not fit the
            card's factor architecture.
    """
    factor = card.factor_model
    if factor is None:
        return None
    path = Path(path)
    _require_listed(path, card, "a factor model", FACTOR_WEIGHTS)
    config = _architecture(
        "factor model architecture", lambda: FactorConfig.from_dict(factor["config"])
    )
    return _filled(FactorModel(config), path, FACTOR_WEIGHTS, card.files[FACTOR_WEIGHTS])


def load_rating_model(path: Path, card: ModelCard) -> MeLU | None:
    """The meta-trained rating model, or None for a version trained on implicit events.

    The weights file's sha256 is checked against the card before it is parsed, and it is parsed
    with ``safetensors`` only (never pickle, never ``torch.load``).

    Raises:
        ArtifactError: Missing files, a checksum mismatch, a foreign or pickle file, or weights
            that do not fit the card's architecture.
    """
    if not card.predicts_ratings:
        return None
    config = _architecture("architecture", lambda: ModelConfig.from_dict(card.model))
    return _filled(MeLU(config), Path(path), WEIGHTS, card.weights_sha256)


def load_artifact(path: Path) -> tuple[MeLU, ModelCard]:
    """Rebuild the meta-trained rating model from an artifact directory.

    Raises:
        ArtifactError: Missing files, a checksum mismatch, a foreign or pickle file, weights
            that do not fit the card's architecture, or a version trained on implicit events
            (it has no rating model: read its card with :func:`read_card` and its ranker with
            :func:`load_ranker`).
    """
    card = read_card(path)
    model = load_rating_model(path, card)
    if model is None:
        raise ArtifactError(
            f"{path}: this version learnt from implicit events and has no rating model.",
            fix="rank with its ranker (load_ranker, or the service's /recommend).",
        )
    return model, card


def load_global_model(path: Path, card: ModelCard) -> MeLU | None:
    """The non-meta baseline stored in the artifact, or None when it has none."""
    sha = card.files.get(GLOBAL_WEIGHTS)
    if sha is None:
        return None
    config = ModelConfig.from_dict({**card.model, "meta_sgd": False})
    return _filled(MeLU(config), Path(path), GLOBAL_WEIGHTS, sha)
