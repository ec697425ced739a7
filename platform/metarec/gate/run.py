"""Run the gate on an artifact folder: read its card, find production, decide.

Production's numbers must be on the candidate's held-out users. When the caller injects an
``evaluate(artifact_dir, users) -> metrics`` function, production's (verified) artifact is
re-evaluated on the candidate's ``test_users``. Without one, production's stored card metrics
are used, and the decision records whether they were computed on the same users.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from metarec.gate.decision import GateDecision, Metrics, decide
from metarec.gate.policy import GatePolicy
from metarec.registry.artifacts import inspect_artifact
from metarec.registry.service import Registry
from metarec.registry.types import VersionRef


class Evaluator(Protocol):
    """Evaluates an artifact on given held-out users (same layout as the card's metrics)."""

    def __call__(self, artifact_dir: Path, users: Mapping[str, Any]) -> Metrics:
        """Return ``metrics[scenario][support_size][method][metric]`` for ``users``."""
        ...


def training_set_evaluator(training_set: Path, *, like: Metrics) -> Evaluator:
    """An evaluator that re-evaluates an artifact on ``training_set`` (MetaRec's trainer).

    Args:
        training_set: The candidate's training set (parquet with manifest).
        like: The candidate's metrics: the same scenarios and support sizes are evaluated.

    Returns:
        ``evaluate(artifact_dir, users) -> metrics`` for :func:`gate_artifact`.
    """
    from metarec.training.evaluation import evaluate_artifact

    scenarios = list(like)
    sizes = sorted({str(size) for by_size in like.values() for size in by_size})

    def evaluate(artifact_dir: Path, users: Mapping[str, Any]) -> Metrics:
        return evaluate_artifact(
            artifact_dir,
            Path(training_set),
            scenarios=scenarios or None,
            support_sizes=sizes or None,
            users={scenario: list(ids) for scenario, ids in users.items()},
        )

    return evaluate


def gate_artifact(
    artifact_dir: Path,
    *,
    policy: GatePolicy,
    model: str,
    registry: Registry | None = None,
    evaluate: Evaluator | None = None,
) -> GateDecision:
    """Decide whether the artifact may be registered.

    Args:
        artifact_dir: Candidate folder (``model.safetensors`` + ``model_card.json``).
        policy: The gate policy.
        model: The registered model the candidate would become a version of.
        registry: Where to find the current production version (None: no comparison).
        evaluate: Re-evaluates production on the candidate's held-out users, if given.

    Returns:
        The decision (not stored: :meth:`Registry.register` stores it with the version, and
        :meth:`Registry.record_rejection` records a rejection in the ledger).
    """
    manifest = inspect_artifact(Path(artifact_dir))
    card = manifest.card
    method = policy.method or str(card.get("algorithm") or "")
    metrics: Metrics = card.get("metrics") or {}
    notes: list[str] = []
    if not method:
        notes.append("the card names no algorithm and the policy no method")
    production = registry.production(model) if registry is not None else None
    production_metrics: Metrics | None = None
    production_method: str | None = None
    basis = "no production version"
    same_users = True
    if production is not None:
        production_method = production.lineage.algorithm or method
        test_users = card.get("test_users") or {}
        if evaluate is not None:
            assert registry is not None
            with tempfile.TemporaryDirectory(prefix="metarec-production-") as tmp:
                folder = registry.fetch(
                    VersionRef(model=model, version=production.version), Path(tmp) / "artifact"
                )
                production_metrics = evaluate(folder, test_users)
            basis = f"{production.tag} re-evaluated on the candidate's held-out users"
        else:
            production_metrics = production.lineage.metrics
            same_users = bool(test_users) and production.lineage.test_users == test_users
            basis = (
                f"{production.tag}'s stored metrics "
                f"({'same' if same_users else 'different'} held-out users)"
            )
    return decide(
        policy,
        model=model,
        artifact_digest=manifest.digest,
        candidate_metrics=metrics,
        candidate_method=method,
        production_metrics=production_metrics,
        production_method=production_method,
        production_version=None if production is None else production.version,
        comparison_basis=basis,
        same_users=same_users,
        notes=notes,
    )
