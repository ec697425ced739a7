"""Evaluate a candidate artifact, local or on an object store, and keep the numbers beside it.

The pipeline's evaluation step: cold-start metrics of the artifact and every baseline on its
held-out users, written as ``<artifact>.evaluation.json`` and an MAE plot
``<artifact>.evaluation.png`` beside the folder (outside it, so its digest does not change).
An artifact at a URI is read from a temporary copy, and the files go beside it on the store.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from metarec.features.training_set import Location, as_location, write_text
from metarec.ops.locations import artifact_sibling, local_artifact, store_file

JSON_SUFFIX = ".evaluation.json"
PLOT_SUFFIX = ".evaluation.png"


class Evaluation(BaseModel):
    """A candidate's cold-start metrics and where they were written."""

    model_config = ConfigDict(frozen=True)

    metrics: dict[str, Any]
    metrics_json: str
    plot_png: str

    @property
    def methods(self) -> list[str]:
        """Every method evaluated (the candidate and the baselines), sorted."""
        return sorted({m for sizes in self.metrics.values() for ms in sizes.values() for m in ms})


def evaluate_candidate(
    *,
    artifact: Location,
    training_set: Location,
    support_sizes: Sequence[str | int] | None = None,
) -> Evaluation:
    """Evaluate ``artifact`` on the held-out users of ``training_set``; write JSON and a plot.

    Args:
        artifact: Artifact folder written by training, or its URI.
        training_set: The training set it was trained on (a path or URI).
        support_sizes: Support sizes (default: the card's).

    Returns:
        The metrics and the locations of ``<artifact>.evaluation.json`` and ``.png``.
    """
    from metarec.training.evaluation import evaluate_artifact, plot_mae

    with local_artifact(artifact) as folder:
        metrics = evaluate_artifact(
            folder,
            as_location(training_set),  # a URI is read through fsspec, never made a Path
            support_sizes=support_sizes,
        )
    json_at = artifact_sibling(artifact, JSON_SUFFIX)
    if isinstance(json_at, Path):
        json_at.parent.mkdir(parents=True, exist_ok=True)
    write_text(json_at, json.dumps(metrics, indent=2))
    png_at = artifact_sibling(artifact, PLOT_SUFFIX)
    if isinstance(png_at, Path):
        plot_mae(metrics, png_at)
    else:
        with tempfile.TemporaryDirectory(prefix="metarec-plot-") as tmp:
            store_file(plot_mae(metrics, Path(tmp) / "plot.png"), png_at)
    return Evaluation(metrics=metrics, metrics_json=str(json_at), plot_png=str(png_at))
