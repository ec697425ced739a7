"""Pipeline component: cold-start evaluation of an artifact: JSON metrics and an MAE plot.

A thin face over :func:`metarec.ops.evaluate_candidate`. The artifact and the training set are
local paths or URIs on an object store (``s3://…``, as the KFP pipeline passes them); the
metrics and the plot are written beside the artifact there.

Idempotent: the same artifact and training set give the same numbers (the split is rebuilt
from the model card's seed).
"""

from __future__ import annotations

from metarec.components import component_settings
from pydantic import BaseModel, ConfigDict


class EvaluationOutput(BaseModel):
    """Where the evaluation is and its headline (JSON-able)."""

    model_config = ConfigDict(frozen=True)

    metrics_json: str
    plot_png: str
    methods: list[str]


def evaluate_model(
    *,
    artifact: str,
    training_set: str,
    home: str | None = None,
    support_sizes: list[str] | None = None,
) -> EvaluationOutput:
    """Evaluate ``artifact`` and every baseline on its held-out users, all scenarios.

    Args:
        artifact: Artifact folder written by training, or its URI.
        training_set: The training set it was trained on (a path or URI).
        home: MetaRec home (default: the configured one).
        support_sizes: Support sizes (default: 5, 10, 20, all).

    Returns:
        Locations of the metrics JSON and the MAE-vs-support-size plot (beside the artifact).
    """
    from metarec.ops import evaluate_candidate

    component_settings(home)  # telemetry off, tool homes in the MetaRec home
    done = evaluate_candidate(
        artifact=artifact, training_set=training_set, support_sizes=support_sizes
    )
    return EvaluationOutput(
        metrics_json=done.metrics_json, plot_png=done.plot_png, methods=done.methods
    )
