"""The injected evaluators that re-evaluate production (and the candidate) on given users.

* ``evaluate(artifact_dir, users) -> metrics`` re-evaluates an artifact's rating metrics;
* ``evaluate_ranking(artifact_dir, users) -> ranking`` re-evaluates its ranking table.

MetaRec's evaluate on a training set with the trainer's code, imported when they run.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from metarec.gate.checks import Metrics, RankingMetrics


class Evaluator(Protocol):
    """Evaluates an artifact on given held-out users (same layout as the card's metrics)."""

    def __call__(self, artifact_dir: Path, users: Mapping[str, Any]) -> Metrics:
        """Return ``metrics[scenario][support_size][method][metric]`` for ``users``."""
        ...


class RankingEvaluator(Protocol):
    """Evaluates an artifact's whole-catalogue ranking on given held-out users."""

    def __call__(self, artifact_dir: Path, users: Mapping[str, Any]) -> RankingMetrics:
        """Return ``ranking[scenario][cell][method][metric]`` (the card's layout) for ``users``."""
        ...


def _layout(table: Mapping[str, Mapping[str, Any]]) -> tuple[list[str], list[str]]:
    """The scenarios of a card table and the columns (support sizes or cells) under them.

    The columns keep the card's order: the trainer names the K = 0 ranking cell after the first
    support order it is given (``time@0`` in a card), so sorting them (``random`` first) would
    re-evaluate a ``random@0`` cell that the card does not have.
    """
    return sorted(table), list(
        dict.fromkeys(str(column) for by_column in table.values() for column in by_column)
    )


def training_set_evaluator(training_set: Path | str, *, like: Metrics) -> Evaluator:
    """An evaluator that re-evaluates an artifact on ``training_set`` (MetaRec's trainer).

    Args:
        training_set: The candidate's training set (parquet with manifest).
        like: The candidate's metrics: the same scenarios and support sizes are evaluated.

    Returns:
        ``evaluate(artifact_dir, users) -> metrics`` for :func:`gate_artifact`.
    """
    from metarec.training.evaluation import evaluate_artifact

    scenarios, sizes = _layout(like)

    def evaluate(artifact_dir: Path, users: Mapping[str, Any]) -> Metrics:
        return evaluate_artifact(
            artifact_dir,
            training_set,
            scenarios=scenarios or None,
            support_sizes=sizes or None,
            users={scenario: list(ids) for scenario, ids in users.items()},
        )

    return evaluate


def training_set_ranking_evaluator(
    training_set: Path | str, *, like: RankingMetrics, device: str = "cpu"
) -> RankingEvaluator:
    """A ranking evaluator that re-ranks the catalogue with an artifact on ``training_set``.

    The trainer's ``evaluate_ranking_artifact`` is imported when the evaluator runs, so building
    one is cheap and never fails on an install without the training code.

    Args:
        training_set: The candidate's training set (parquet with manifest).
        like: The candidate's ranking table (``card["ranking"]``): the same scenarios and cells
            are evaluated (empty: the trainer's defaults).
        device: ``cpu``, ``cuda`` or ``auto``.

    Returns:
        ``evaluate_ranking(artifact_dir, users) -> ranking`` for :func:`gate_artifact`.
    """
    scenarios, cells = _layout(like)

    def evaluate_ranking(artifact_dir: Path, users: Mapping[str, Any]) -> RankingMetrics:
        from metarec.training.evaluation import evaluate_ranking_artifact

        return evaluate_ranking_artifact(
            artifact_dir,
            training_set,
            users={scenario: list(ids) for scenario, ids in users.items()},
            scenarios=scenarios or None,
            cells=cells or None,
            device=device,
        )

    return evaluate_ranking
