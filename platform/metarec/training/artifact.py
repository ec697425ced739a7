"""Model artifacts: a directory with ``model.safetensors`` and ``model_card.json``.

Beside them, optionally: the non-meta global model, the served ranker with its item prior, and
the meta-learned factor fold-in (``factor_model.safetensors``).

No pickle anywhere: weights are written and read with ``safetensors`` only. The card holds
everything needed to rebuild the model alone (architecture, encoder vocabularies, inner loop)
plus its lineage and metrics, and the sha256 of every weights file, verified before parsing.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, ValidationError
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

import metarec
from metarec.errors import ArtifactError
from metarec.learning.factor_model import FactorConfig, FactorModel
from metarec.learning.item_models import EASE
from metarec.learning.model import MeLU, ModelConfig
from metarec.learning.ranker import Ranker, RankerConfig

FORMAT_VERSION = 1
WEIGHTS = "model.safetensors"
GLOBAL_WEIGHTS = "global_model.safetensors"
RANKER_WEIGHTS = "ranker.safetensors"
ITEM_PRIOR = "item_prior.safetensors"
FACTOR_WEIGHTS = "factor_model.safetensors"
CARD = "model_card.json"

Metrics = dict[str, dict[str, dict[str, dict[str, float]]]]


class ModelCard(BaseModel):
    """``model_card.json``: how to rebuild the model, where it came from, how good it is."""

    model_config = ConfigDict(extra="forbid")

    format_version: int = FORMAT_VERSION
    algorithm: str
    model: dict[str, Any]
    encoder: dict[str, Any]
    inner_loop: dict[str, Any]
    finetune: dict[str, Any]
    hyperparameters: dict[str, Any]
    split: dict[str, Any]
    feature_service: str
    feature_service_version: str
    dataset_fingerprint: str
    snapshot_id: str
    validation_result_id: str
    code_version: dict[str, str | None]
    created_at: datetime
    training: dict[str, Any]
    metrics: Metrics
    test_users: dict[str, list[int]]
    ranking: dict[str, Any] = {}
    ranker: dict[str, Any] | None = None
    factor_model: dict[str, Any] | None = None
    weights_sha256: str
    files: dict[str, str]


def code_version() -> dict[str, str | None]:
    """``metarec.__version__`` and the git commit of the checkout, when there is one."""
    commit = None
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(metarec.__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
        if result.returncode == 0:
            commit = result.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {"metarec": metarec.__version__, "git_commit": commit}


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class RankerParts:
    """The served ranker's weights: the meta-learned model and the EASE item-item prior."""

    model: Ranker
    ease: EASE
    item_ids: np.ndarray  # (I,) the catalogue order of the prior's rows and columns


def _state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}


def save_artifact(
    out: Path,
    *,
    model: MeLU,
    global_model: MeLU | None,
    card: dict[str, Any],
    ranker: RankerParts | None = None,
    factor_model: FactorModel | None = None,
) -> ModelCard:
    """Write an artifact directory atomically (a temporary sibling renamed into place).

    Args:
        out: Directory to create (replaced if it exists).
        model: The meta-trained model.
        global_model: The non-meta baseline model (same architecture), stored beside it.
        card: Card fields except ``model``, ``weights_sha256``, ``files``, ``format_version``.
        ranker: The served ranker's weights (``card["ranker"]`` describes them), if any.
        factor_model: The meta-learned factor fold-in, if any; its architecture is recorded in
            ``card["factor_model"]["config"]`` (other entries of ``card["factor_model"]``, e.g.
            its training report, are kept).

    Returns:
        The written card.
    """
    out = Path(out)
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(_state(model), str(tmp / WEIGHTS), metadata={"format": "pt"})
    files = {WEIGHTS: sha256_file(tmp / WEIGHTS)}
    if global_model is not None:
        save_file(_state(global_model), str(tmp / GLOBAL_WEIGHTS), metadata={"format": "pt"})
        files[GLOBAL_WEIGHTS] = sha256_file(tmp / GLOBAL_WEIGHTS)
    if ranker is not None:
        save_file(_state(ranker.model), str(tmp / RANKER_WEIGHTS), metadata={"format": "pt"})
        prior = {
            "ease": torch.from_numpy(np.ascontiguousarray(ranker.ease.weights())),
            "item_ids": torch.from_numpy(np.ascontiguousarray(ranker.item_ids, dtype=np.int64)),
        }
        save_file(prior, str(tmp / ITEM_PRIOR), metadata={"format": "pt"})
        files[RANKER_WEIGHTS] = sha256_file(tmp / RANKER_WEIGHTS)
        files[ITEM_PRIOR] = sha256_file(tmp / ITEM_PRIOR)
    if factor_model is not None:
        save_file(_state(factor_model), str(tmp / FACTOR_WEIGHTS), metadata={"format": "pt"})
        files[FACTOR_WEIGHTS] = sha256_file(tmp / FACTOR_WEIGHTS)
        card = {
            **card,
            "factor_model": {
                **(card.get("factor_model") or {}),
                "config": factor_model.config.to_dict(),
            },
        }
    written = ModelCard(
        **card,
        model=model.config.to_dict(),
        weights_sha256=files[WEIGHTS],
        files=files,
        format_version=FORMAT_VERSION,
    )
    (tmp / CARD).write_text(written.model_dump_json(indent=2))
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return written


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


def _fill(model: torch.nn.Module, state: dict[str, torch.Tensor], file: Path) -> None:
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ArtifactError(
            f"{file}: weights do not fit the architecture in the card ({exc}).", fix=FIX_WEIGHTS
        ) from exc
    model.eval()


def _load_weights(path: Path, name: str, expected_sha: str, config: ModelConfig) -> MeLU:
    model = MeLU(config)
    _fill(model, _read_verified(path, name, expected_sha), path / name)
    return model


def load_ranker(path: Path, card: ModelCard) -> RankerParts | None:
    """The served ranker stored in the artifact (checksums verified), or None without one.

    Raises:
        ArtifactError: A file is missing, altered, not safetensors, or does not fit the
            card's ranker architecture.
    """
    if card.ranker is None:
        return None
    path = Path(path)
    for name in (RANKER_WEIGHTS, ITEM_PRIOR):
        if name not in card.files:
            raise ArtifactError(
                f"{path}: the card describes a ranker but lists no {name}.", fix=FIX_WEIGHTS
            )
    try:
        config = RankerConfig.from_dict(card.ranker["config"])
    except (TypeError, KeyError, ValueError) as exc:
        raise ArtifactError(
            f"model card: invalid ranker architecture ({exc}).",
            fix="retrain the model with `metarec train`.",
        ) from exc
    model = Ranker(config)
    _fill(model, _read_verified(path, RANKER_WEIGHTS, card.files[RANKER_WEIGHTS]), path)
    prior = _read_verified(path, ITEM_PRIOR, card.files[ITEM_PRIOR])
    if set(prior) != {"ease", "item_ids"}:
        raise ArtifactError(f"{path / ITEM_PRIOR}: unexpected tensors.", fix=FIX_WEIGHTS)
    return RankerParts(
        model=model,
        ease=EASE.from_weights(prior["ease"].numpy()),
        item_ids=prior["item_ids"].numpy(),
    )


def load_factor_model(path: Path, card: ModelCard) -> FactorModel | None:
    """The meta-learned factor fold-in stored in the artifact, or None without one.

    Its file's sha256 is checked against the card before it is parsed (``safetensors`` only).

    Raises:
        ArtifactError: The file is missing, altered, not safetensors, or does not fit the
            card's factor architecture.
    """
    if card.factor_model is None:
        return None
    path = Path(path)
    if FACTOR_WEIGHTS not in card.files:
        raise ArtifactError(
            f"{path}: the card describes a factor model but lists no {FACTOR_WEIGHTS}.",
            fix=FIX_WEIGHTS,
        )
    try:
        config = FactorConfig.from_dict(card.factor_model["config"])
    except (TypeError, KeyError, ValueError) as exc:
        raise ArtifactError(
            f"model card: invalid factor model architecture ({exc}).",
            fix="retrain the model with `metarec train`.",
        ) from exc
    model = FactorModel(config)
    state = _read_verified(path, FACTOR_WEIGHTS, card.files[FACTOR_WEIGHTS])
    _fill(model, state, path / FACTOR_WEIGHTS)
    return model


def load_artifact(path: Path) -> tuple[MeLU, ModelCard]:
    """Rebuild the meta-trained model from an artifact directory.

    The weights file's sha256 is checked against the card before it is parsed, and it is parsed
    with ``safetensors`` only (never pickle, never ``torch.load``).

    Raises:
        ArtifactError: Missing files, a checksum mismatch, a foreign or pickle file, or weights
            that do not fit the card's architecture.
    """
    card = read_card(path)
    config = _model_config(card)
    return _load_weights(Path(path), WEIGHTS, card.weights_sha256, config), card


def load_global_model(path: Path, card: ModelCard) -> MeLU | None:
    """The non-meta baseline stored in the artifact, or None when it has none."""
    sha = card.files.get(GLOBAL_WEIGHTS)
    if sha is None:
        return None
    config = ModelConfig.from_dict({**card.model, "meta_sgd": False})
    return _load_weights(Path(path), GLOBAL_WEIGHTS, sha, config)


def _model_config(card: ModelCard) -> ModelConfig:
    try:
        return ModelConfig.from_dict(card.model)
    except (TypeError, KeyError, ValueError) as exc:
        raise ArtifactError(
            f"model card: invalid architecture ({exc}).",
            fix="retrain the model with `metarec train`.",
        ) from exc


def now() -> datetime:
    """The current UTC time (for ``created_at``)."""
    return datetime.now(UTC)
