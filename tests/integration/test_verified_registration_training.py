"""The gate re-evaluates a really trained candidate on its card's held-out users (issue 20, 6).

The re-evaluation reproduces the card that training wrote (both tables, within the tolerance),
so an honest candidate is verified; the same artifact with a forged card is rejected with
"the card's metrics do not match a re-evaluation"; without the training set the decision says
the numbers are the card's, unverified.
"""

from __future__ import annotations

import json
import shutil
import time

import pytest
import torch
from metarec.config import load_settings
from metarec.gate.verification import MISMATCH, RULE, UNVERIFIED, VERIFIED_BASIS
from metarec.ops import gate_candidate
from metarec.testing.serving import mark_validated

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CONFIG = {
    "algorithm": "fomaml",
    "embedding_dim": 8,
    "hidden": [16, 16],
    "max_steps": 40,
    "ranker_max_steps": 20,
    "factor_pretrain_steps": 20,
    "factor_max_steps": 10,
    "ranker_eval_every": 10,
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
# Lenient rules: this test is about the verification, not the model's quality. The ranking rule
# makes the gate read (so verify) the ranking table too.
POLICY = """
name: verification
margins:
  - {metric: mae, over: global_mean, min_improvement: -1.0, cells: mean}
  - {table: ranking, metric: ndcg@20, over: popularity, min_improvement: -1.0, cells: mean}
"""


def test_a_trained_card_is_verified_and_a_forged_one_rejected(synthetic_home, tmp_path):
    from metarec.training.config import TrainingConfig
    from metarec.training.trainer import train

    torch.set_num_threads(1)
    source = synthetic_home.paths.training_sets / "synthetic.parquet"
    training_set = mark_validated(source, tmp_path / "ts" / "ts.parquet", result_id="r")
    honest = tmp_path / "honest"
    train(training_set, config=TrainingConfig.build(CONFIG), out=honest)
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    settings = load_settings(home=tmp_path / "home", registry={"export_bentoml": False})

    def gate(artifact, **kwargs):
        return gate_candidate(settings, artifact=artifact, model="m", policy=policy, **kwargs)

    started = time.perf_counter()
    verified = gate(honest, training_set=training_set)
    seconds = time.perf_counter() - started
    assert verified.accepted, [c.detail for c in verified.broken]
    assert verified.checks[0].rule == RULE and verified.checks[0].passed
    assert verified.metrics_basis == VERIFIED_BASIS
    assert "rating and ranking numbers" in verified.checks[0].detail
    print(f"gate with the candidate's re-evaluation: {seconds:.1f} s")

    forged = tmp_path / "forged"
    shutil.copytree(honest, forged)
    card = json.loads((forged / "model_card.json").read_text())
    for by_size in card["metrics"].values():
        for cell in by_size.values():
            cell["fomaml"]["mae"] -= 0.1  # a better MAE than the weights reach
    (forged / "model_card.json").write_text(json.dumps(card))
    rejected = gate(forged, training_set=training_set)
    assert not rejected.accepted
    assert [c.rule for c in rejected.broken] == [RULE]
    assert rejected.broken[0].detail.startswith(MISMATCH)

    unverified = gate(forged)
    assert unverified.accepted and UNVERIFIED in unverified.notes
