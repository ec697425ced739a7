"""The model card (``model_card.json``): its typed schema, without torch.

Training writes it (:func:`metarec.training.artifact.save_artifact`); the registry, the gate and
serving read it back as a :class:`ModelCard`. This module imports no torch, so that reading a
card (listing registry versions, opening the API) stays cheap.
"""

from __future__ import annotations

import subprocess
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

import metarec

FORMAT_VERSION = 1

Metrics = dict[str, dict[str, dict[str, dict[str, float]]]]
Label = Literal["rating", "event"]


class ModelCard(BaseModel):
    """``model_card.json``: how to rebuild the model, where it came from, how good it is."""

    model_config = ConfigDict(extra="forbid")

    format_version: int = FORMAT_VERSION
    # What the model learnt from: explicit ratings (a rating model, ``model.safetensors``, and
    # the ranker), or implicit events (the ranker alone: no rating model, no rating metrics).
    label: Label = "rating"
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
    test_users: dict[str, list[int | str]]  # the ids as ingested (a team's text ids too)
    ranking: dict[str, Any] = {}
    ranker: dict[str, Any] | None = None
    factor_model: dict[str, Any] | None = None
    weights_sha256: str
    files: dict[str, str]

    @property
    def predicts_ratings(self) -> bool:
        """Whether the version has a rating model (``/predict``, rating metrics, online MAE)."""
        return self.label == "rating"


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
