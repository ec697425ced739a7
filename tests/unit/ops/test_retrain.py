"""`retrain` and its steps on a real home: Feast, Great Expectations, a small training, the gate."""

import shutil
from pathlib import Path

import pytest
import yaml
from metarec.config import load_settings
from metarec.errors import ConfigError, ReferenceProfileNotFoundError
from metarec.ops import check_training_set, retrain, train_candidate, training_config
from metarec.registry import Action, Registry, Stage
from metarec.testing.serving import PERMISSIVE_POLICY, SMALL_CONFIG
from metarec.validation.gate import build_reference_profile

pytestmark = pytest.mark.slow


@pytest.fixture
def home(synthetic_home, tmp_path: Path):
    """A private copy of the synthetic home (its training set built, no reference profile)."""
    target = tmp_path / "home"
    shutil.copytree(synthetic_home.paths.home, target)
    return load_settings(home=target, registry={"export_bentoml": False})


def test_training_config_layers_defaults_file_and_values(tmp_path):
    config_file = tmp_path / "training.yaml"
    config_file.write_text(yaml.safe_dump({"algorithm": "reptile", "seed": 3, "max_steps": 9}))
    config = training_config(
        defaults={"split_seed": 0, "seed": 1}, config_file=config_file, values={"seed": 5}
    )
    assert (config.algorithm.value, config.split_seed, config.seed, config.max_steps) == (
        "reptile",
        0,
        5,
        9,
    )
    with pytest.raises(ConfigError, match="max_steps"):
        training_config(values={"max_steps": -1})


def test_validation_needs_a_reference_profile_first(home):
    training_set = home.paths.training_sets / "synthetic.parquet"
    with pytest.raises(ReferenceProfileNotFoundError):
        check_training_set(home, training_set=training_set)


def test_retrain_registers_a_gated_candidate_and_a_second_train_reuses_it(home, tmp_path):
    policy = tmp_path / "policy.yaml"
    policy.write_text(PERMISSIVE_POLICY)
    build_reference_profile(home, training_set=home.paths.training_sets / "synthetic.parquet")
    config = training_config(values=SMALL_CONFIG)
    outcome = retrain(home, config=config, actor="scheduler", policy=policy)

    assert outcome.validation.success
    assert outcome.candidate.card.validation_result_id == outcome.validation.result_id
    assert outcome.candidate.card.dataset_fingerprint == outcome.training_set.fingerprint
    assert not outcome.candidate.reused
    registered = outcome.registration.registered
    assert outcome.registration.accepted and registered is not None
    assert (registered.tag, registered.stage) == ("metarec:v1", Stage.STAGING)
    with Registry.open(home) as registry:
        last = registry.history("metarec")[-1]
    assert (last.action, last.actor) == (Action.REGISTER, "scheduler")

    again = train_candidate(
        home, training_set=Path(outcome.training_set.path), config=config
    )  # same fingerprint and hyper-parameters: the finished run's artifact
    assert again.reused and again.artifact == outcome.candidate.artifact
