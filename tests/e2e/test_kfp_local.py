"""The KFP pipeline run locally (kfp.local.SubprocessRunner): it produces a registered version."""

import shutil

import pytest
from metarec.config import load_settings
from metarec.registry import Registry
from metarec.validation.gate import build_reference_profile
from metarec.workflows.kfp_pipeline import run_locally

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

TINY = {
    "embedding_dim": 8,
    "hidden": [16, 16],
    "max_steps": 20,
    "ranker_max_steps": 30,
    "factor_pretrain_steps": 30,
    "factor_max_steps": 10,
    "ranker_eval_every": 15,
    "ranker_dim": 16,
    "meta_batch_size": 8,
    "inner_steps": 2,
    "eval_every": 10,
    "patience": 10,
    "checkpoint_every": 1000,
    "global_epochs": 1,
    "finetune_steps": 2,
    "support_sizes": ["5", "all"],
}


def test_local_pipeline_run_registers_a_version(synthetic_home, tmp_path):
    home = tmp_path / "home"
    shutil.copytree(synthetic_home.paths.home, home)
    settings = load_settings(home=home)
    build_reference_profile(
        settings, training_set=settings.paths.training_sets / "synthetic.parquet"
    )
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "name: e2e\nmargins:\n"
        "  - {metric: mae, over: global_mean, min_improvement: 0.0, cells: mean}\n"
    )

    run_locally(
        home=str(home), training_config=TINY, policy=str(policy), pipeline_root=tmp_path / "kfp"
    )

    with Registry.open(settings) as registry:
        versions = registry.list_versions(settings.registry.model_name)
        production = registry.production_version(settings.registry.model_name)
        history = registry.history(settings.registry.model_name)
    # The first version has no incumbent to canary against: the canary step promotes it.
    assert [v.stage for v in versions] == ["production"]
    assert production == versions[0].version
    assert history[-1].action == "promote" and "first production version" in history[-1].reason
    assert versions[0].lineage.dataset_fingerprint.startswith("sha256:")
