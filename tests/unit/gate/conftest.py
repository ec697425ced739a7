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
from metarec.testing.registry import (
    fixture_ranking,
    write_fixture_artifact,
)

make_ranking = fixture_ranking


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
