"""Ranking tables, and artifacts with them, for the gate's tests.

Cards written before whole-catalogue ranking have no ``ranking`` key; these fixtures add one
(``card["ranking"][scenario][cell][method][metric]``) or take it away. They are functions
returned by fixtures, as the tests run with ``--import-mode=importlib``.
"""

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from metarec.gate.policy import GatePolicy, load_policy
from metarec.gate.run import gate_artifact
from metarec.registry import Registry, VersionRef
from metarec.registry.testing import SCENARIOS, write_fixture_artifact

RANKING_CELLS = tuple(f"{order}@{k}" for order in ("time", "random") for k in (5, 10, 20))
# nDCG@20 of every baseline (the served ranker's is set per test).
RANKING_BASELINES = {
    "meta_ranker": 0.27,
    "plain_ranker": 0.25,
    "rating_model": 0.15,
    "popularity": 0.20,
    "item_mean": 0.10,
    "item_knn": 0.22,
    "ease": 0.24,
    "ease_weighted": 0.26,
}


def make_ranking(*, ranker: float = 0.30, **baselines: float) -> dict[str, Any]:
    """A ranking table where ``ranker`` has nDCG@20 ``ranker`` (baselines overridable)."""
    methods = {**RANKING_BASELINES, **baselines, "ranker": ranker}
    return {
        scenario: {
            cell: {
                method: {
                    "recall@20": min(1.0, ndcg * 1.5),
                    "ndcg@20": ndcg,
                    "hit@10": min(1.0, ndcg * 2),
                    "mrr": ndcg * 0.9,
                    "coverage": 0.3,
                    "personalisation": 0.8,
                    "popularity": 1.0 if method == "popularity" else 0.6,
                }
                for method, ndcg in methods.items()
            }
            for cell in RANKING_CELLS
        }
        for scenario in SCENARIOS
    }


def set_ranking(artifact: Path, ranking: dict[str, Any] | None) -> Path:
    """Put ``ranking`` into the artifact's card (None: remove it, as in an old card)."""
    card_file = artifact / "model_card.json"
    card = json.loads(card_file.read_text())
    card.pop("ranking", None)
    if ranking is not None:
        card["ranking"] = ranking
    card_file.write_text(json.dumps(card, indent=2))
    return artifact


def without_ranking_rules(policy: GatePolicy) -> GatePolicy:
    """``policy`` without its ranking rules (how old productions were gated)."""
    return policy.model_copy(
        update={
            kind: [rule for rule in getattr(policy, kind) if rule.table == "rating"]
            for kind in ("absolute", "margins", "regression")
        }
    )


@pytest.fixture
def ranking() -> Callable[..., dict[str, Any]]:
    """``ranking(ranker=0.30, **baselines)``: a ranking table."""
    return make_ranking


@pytest.fixture
def ranked_artifact(tmp_path: Path) -> Callable[..., Path]:
    """``ranked_artifact(name, ranking=table|None, **write_fixture_artifact kwargs)``."""

    def make(name: str, *, ranking: dict[str, Any] | None, **kwargs: Any) -> Path:
        return set_ranking(write_fixture_artifact(tmp_path / name, **kwargs), ranking)

    return make


@pytest.fixture
def production(ranked_artifact: Callable[..., Path]) -> Callable[..., int]:
    """``production(registry, ranking=table|None, **kwargs)``: register, promote, version."""

    def make(registry: Registry, *, ranking: dict[str, Any] | None, **kwargs: Any) -> int:
        artifact = ranked_artifact(f"production-{kwargs.get('seed', 0)}", ranking=ranking, **kwargs)
        policy = load_policy() if ranking is not None else without_ranking_rules(load_policy())
        decision = gate_artifact(artifact, policy=policy, model="metarec", registry=registry)
        assert decision.accepted, decision.summary()
        info = registry.register(artifact, model="metarec", gate_decision=decision, actor="t")
        ref = VersionRef(model="metarec", version=info.version)
        registry.promote(ref, actor="t", reason="go")
        return info.version

    return make
