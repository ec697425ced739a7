"""The gate on really trained models: a candidate meta-trained on shuffled ratings is rejected
with the broken rule named; one trained on the real ratings passes and is registered."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from metarec.errors import GateRejectedError
from metarec.gate.policy import load_policy
from metarec.gate.run import gate_artifact, training_set_evaluator
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


def accepted_metrics(artifact: Path) -> dict:
    import json

    return json.loads((artifact / "model_card.json").read_text())["metrics"]
