"""The gate on really trained models: a candidate meta-trained on shuffled ratings is rejected
with the broken rule named; one trained on the real ratings passes and is registered."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from metarec.errors import GateRejectedError
from metarec.gate.pairing import training_set_paired_evaluator
from metarec.gate.policy import RegressionRule, load_policy
from metarec.gate.run import gate_artifact, training_set_evaluator, training_set_ranking_evaluator
from metarec.registry import Registry, VersionRef
from metarec.testing.serving import mark_validated

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CONFIG = {
    "embedding_dim": 8,
    "hidden": [16, 16],
    "max_steps": 60,
    "ranker_max_steps": 30,
    "factor_pretrain_steps": 30,
    "factor_max_steps": 10,
    "ranker_eval_every": 15,
    "ranker_dim": 16,
    "meta_batch_size": 8,
    "inner_steps": 2,
    "eval_every": 20,
    "patience": 10,
    "checkpoint_every": 1000,
    "global_epochs": 2,
    "finetune_steps": 2,
    "min_ratings": 13,
    "max_ratings": 100,
    "support_sizes": ["5", "all"],
}


POLICY = """
name: synthetic
margins:
  - {metric: mae, over: global_mean, min_improvement: 0.02, cells: mean}
  - {metric: mae, over: item_bias, min_improvement: 0.0, cells: mean}
regression:
  - {metric: mae, max_regression: 0.02, cells: mean}
"""


def test_shuffled_ratings_candidate_is_rejected(synthetic_home, tmp_path):
    from metarec.training.config import TrainingConfig
    from metarec.training.trainer import train

    torch.set_num_threads(1)
    source = synthetic_home.paths.training_sets / "synthetic.parquet"
    real = mark_validated(source, tmp_path / "real" / "ts.parquet", result_id="result-real")
    shuffled = mark_validated(
        source,
        tmp_path / "shuffled" / "ts.parquet",
        result_id="result-shuffled",
        ratings=np.random.default_rng(0).permutation,
    )
    config = TrainingConfig.build({"algorithm": "fomaml", **CONFIG})
    good = tmp_path / "good"
    bad = tmp_path / "bad"
    train(real, config=config, out=good)
    train(shuffled, config=config, out=bad)

    # The shipped absolute thresholds are for MovieLens; the synthetic data is noisier, so this
    # test keeps the rules that tell learning from noise: margins over the baselines and the
    # regression versus production.
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(POLICY)
    policy = load_policy(policy_file)
    with Registry.connect(
        url=f"sqlite:///{tmp_path / 'r.db'}", artifact_root=str(tmp_path / "artifacts")
    ) as registry:
        accepted = gate_artifact(good, policy=policy, model="metarec", registry=registry)
        assert accepted.accepted, accepted.summary()
        registry.register(good, model="metarec", gate_decision=accepted, actor="t")
        registry.promote(VersionRef(model="metarec", version=1), actor="t", reason="good")

        rejected = gate_artifact(
            bad,
            policy=policy,
            model="metarec",
            registry=registry,
            evaluate=training_set_evaluator(real, like=accepted_metrics(good)),
        )
        assert not rejected.accepted
        broken = {check.rule for check in rejected.broken}
        assert "margin: mae better than global_mean by ≥ 0.02 (mean)" in broken
        assert "regression: mae worse than production by ≤ 0.02 (mean)" in broken
        assert "margin: mae better than global_mean" in rejected.summary()
        assert "re-evaluated on the candidate's held-out users" in rejected.comparison_basis
        with pytest.raises(GateRejectedError, match="broken: margin: mae better than global_mean"):
            registry.register(bad, model="metarec", gate_decision=rejected, actor="t")
        assert [v.version for v in registry.list_versions("metarec")] == [1]

        # An honest retrain (another seed, the same user split): with both versions' per-user
        # values on its held-out users, the regressions are paired tests of the served rating
        # method (factor_map) and the served ranker.
        retrain = tmp_path / "retrain"
        train(real, config=config.model_copy(update={"seed": 1, "split_seed": 0}), out=retrain)
        ranked = policy.model_copy(update={"regression": [*policy.regression, RANKING_RULE]})
        paired = gate_artifact(
            retrain,
            policy=ranked,
            model="metarec",
            registry=registry,
            evaluate=training_set_evaluator(real, like=accepted_metrics(retrain)),
            evaluate_ranking=training_set_ranking_evaluator(real, like=accepted_ranking(retrain)),
            evaluate_paired=training_set_paired_evaluator(real),
        )
    assert paired.candidate_method == paired.production_method == "factor_map"
    regressions = {c.rule: c for c in paired.checks if c.kind == "regression"}
    mae = regressions["regression: mae worse than production by ≤ 0.02 (mean)"]
    ndcg = regressions[RANKING_REGRESSION]
    for check in (mae, ndcg):
        assert "paired over" in check.detail and "CI [" in check.detail, check.detail
    # Same users and supports as the card's numbers: the paired mean is the card-level
    # difference (MAE pooled over query ratings, nDCG@20 averaged over users).
    assert mae.observed == pytest.approx(mae.value - mae.reference, abs=1e-4)
    assert ndcg.observed == pytest.approx(ndcg.reference - ndcg.value, abs=1e-4)


RANKING_REGRESSION = "regression: ranking ndcg@20 worse than production by ≤ 0.02 (mean, new_user)"
RANKING_RULE = RegressionRule(
    table="ranking", metric="ndcg@20", max_regression=0.02, scenarios=["new_user"], cells="mean"
)


def accepted_ranking(artifact: Path) -> dict:
    import json

    return json.loads((artifact / "model_card.json").read_text())["ranking"]


def accepted_metrics(artifact: Path) -> dict:
    import json

    return json.loads((artifact / "model_card.json").read_text())["metrics"]
