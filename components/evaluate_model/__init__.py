"""Pipeline component: cold-start evaluation of an artifact: JSON metrics and an MAE plot.

Idempotent: the same artifact and training set give the same numbers (the split is rebuilt
from the model card's seed).
"""

from __future__ import annotations

from pathlib import Path

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
        artifact: Artifact folder written by training.
        training_set: The training set it was trained on.
        home: MetaRec home (default: the configured one).
        support_sizes: Support sizes (default: 5, 10, 20, all).

    Returns:
        Paths of the metrics JSON and the MAE-vs-support-size plot (beside the artifact).
    """
    from metarec.training.evaluation import evaluate_artifact, plot_mae, write_json

    component_settings(home)  # telemetry off, tool homes in the MetaRec home
    folder = Path(artifact)
    metrics = evaluate_artifact(folder, Path(training_set), support_sizes=support_sizes)
    json_path = write_json(metrics, folder.with_name(folder.name + ".evaluation.json"))
    plot_path = plot_mae(metrics, folder.with_name(folder.name + ".evaluation.png"))
    methods = sorted({m for sizes in metrics.values() for ms in sizes.values() for m in ms})
    return EvaluationOutput(metrics_json=str(json_path), plot_png=str(plot_path), methods=methods)
