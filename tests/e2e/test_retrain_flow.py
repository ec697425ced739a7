"""The Prefect retrain flow end to end: real Prefect (shared ephemeral server), real Feast, real
Great Expectations, real (small) meta-training, real gate and registry."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from metarec.config import Settings, load_settings
from metarec.data.ingest import write_snapshot
from metarec.data.schema import Dataset
from metarec.data.snapshots import SnapshotStore
from metarec.features.store import apply_features
from metarec.registry import Registry
from metarec.testing.serving import mark_validated, train_and_register
from metarec.validation.gate import build_reference_profile
from metarec.workflows.prefect_flows import retrain_flow

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SMALL_TRAINING = {
    "embedding_dim": 8,
    "hidden": [16, 16],
    "max_steps": 40,
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
    "support_sizes": ["5", "all"],
}
POLICY = """
name: e2e
margins:
  - {metric: mae, over: global_mean, min_improvement: 0.0, cells: mean}
"""


@pytest.fixture
def home(synthetic_home: Settings, tmp_path: Path) -> Settings:
    """A private copy of the synthetic home, with its training set accepted as the profile."""
    target = tmp_path / "home"
    shutil.copytree(synthetic_home.paths.home, target)
    settings = load_settings(home=target)
    build_reference_profile(
        settings, training_set=settings.paths.training_sets / "synthetic.parquet"
    )
    return settings


@pytest.fixture
def policy(tmp_path: Path) -> str:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY)
    return str(path)


# A short canary: two steps of a few seconds, thresholds loose enough for two small models.
FAST_CANARY = {
    "steps": [50, 100],
    "interval_s": 3.0,
    "max_error_rate": 0.01,
    "max_p99_ms": 5000,
    "max_online_mae_delta": 1.0,
    "failure_threshold": 2,
    "min_requests": 10,
    "min_feedback": 5,
}


def test_retrain_flow_bootstraps_then_canaries_the_next_version_into_production(
    prefect_server, home, policy
):
    first = retrain_flow(
        home=str(home.paths.home), training_config=SMALL_TRAINING, policy=policy, canary=FAST_CANARY
    )
    registered = first["registered"]
    assert first["rollout"]["outcome"] == "bootstrapped"  # nothing to canary against yet
    with Registry.open(home) as registry:
        version = registry.list_versions(registered["model"])[0]
        assert registry.production_version(registered["model"]) == registered["version"]
    assert version.lineage.validation_result_id == first["validation"]["result_id"]
    assert version.lineage.dataset_fingerprint == first["training_set"]["fingerprint"]
    assert Path(first["evaluation"]["plot_png"]).is_file()

    # The next scheduled run trains a new version and canaries it against the first under
    # generated traffic, through real `bentoml serve` processes and the local router.
    second = retrain_flow(
        home=str(home.paths.home),
        training_config={**SMALL_TRAINING, "seed": 1},
        policy=policy,
        canary=FAST_CANARY,
    )
    rollout = second["rollout"]
    print("rollout:", rollout)
    new = second["registered"]["version"]
    assert new == registered["version"] + 1
    assert rollout["outcome"] == "promoted", rollout["reason"]
    assert rollout["production_before"] == registered["version"]
    assert rollout["production_after"] == new
    assert rollout["traffic"]["feedback"] > 0
    assert rollout["traffic"]["server_errors"] == 0
    assert rollout["online_mae"]["canary"] is not None
    assert Path(rollout["report_html"]).is_file() and Path(rollout["report_png"]).is_file()
    with Registry.open(home) as registry:
        history = registry.history(registered["model"])
        first_stage = registry.list_versions(registered["model"])
    assert {v.version: v.stage.value for v in first_stage} == {
        registered["version"]: "archived",
        new: "production",
    }
    actions = [(entry.version, entry.action.value) for entry in history]
    assert actions.count((registered["version"], "promote")) == 1
    promotion = [e for e in history if e.version == new and e.action.value == "promote"][-1]
    verdict = promotion.evidence["canary_verdict"]
    assert verdict["status"] == "passed"
    assert [w["canary_weight"] for w in verdict["windows"] if w["result"] == "passed"] == [50, 100]


def test_bad_data_fails_the_flow_at_validation_and_changes_nothing(
    prefect_server, home, policy, tmp_path
):
    # A version already serves production when the bad data arrives.
    validated = mark_validated(
        home.paths.training_sets / "synthetic.parquet", tmp_path / "validated" / "ts.parquet"
    )
    production = train_and_register(home, validated, workdir=tmp_path / "v1")
    store = SnapshotStore(home.paths.snapshots)
    tables = {name: store.read_table(name) for name in ("users", "items", "interactions")}
    shifted = tables["interactions"].assign(rating=5)  # every rating 5: a distribution shift
    snapshot = write_snapshot(
        Dataset(tables["users"], tables["items"], shifted, source="bad"), store
    )
    apply_features(home, snapshot)
    with Registry.open(home) as registry:
        before = registry.list_versions(home.registry.model_name) if registry.list_models() else []

    state = retrain_flow(
        home=str(home.paths.home), training_config=SMALL_TRAINING, policy=policy, return_state=True
    )
    assert state.is_failed()
    reason = str(state.result(raise_on_failure=False))
    print("flow failure reason:", reason)
    assert "share_of_rating_5_vs_reference" in reason
    assert not (home.paths.artifacts / "runs").exists()  # training never started
    with Registry.open(home) as registry:
        after = registry.list_versions(home.registry.model_name) if registry.list_models() else []
        assert registry.production_version(home.registry.model_name) == production.version
    assert after == before
