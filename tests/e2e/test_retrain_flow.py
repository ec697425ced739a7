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
from metarec.validation.gate import build_reference_profile
from metarec.workflows.prefect_flows import retrain_flow

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SMALL_TRAINING = {
    "embedding_dim": 8,
    "hidden": [16, 16],
    "max_steps": 40,
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


def test_retrain_flow_registers_a_validated_gated_version_with_lineage(
    prefect_server, home, policy
):
    result = retrain_flow(home=str(home.paths.home), training_config=SMALL_TRAINING, policy=policy)
    registered = result["registered"]
    assert registered["stage"] == "staging"
    with Registry.open(home) as registry:
        version = registry.list_versions(registered["model"])[0]
        history = registry.history(registered["model"])
    assert version.lineage.validation_result_id == result["validation"]["result_id"]
    assert version.lineage.dataset_fingerprint == result["training_set"]["fingerprint"]
    assert any(entry.action == "register" for entry in history)
    assert Path(result["evaluation"]["plot_png"]).is_file()


def test_bad_data_fails_the_flow_at_validation_and_changes_nothing(prefect_server, home, policy):
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
    assert after == before
