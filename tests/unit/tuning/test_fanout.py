"""The fan-out steps of the KFP tuning pipeline: create the study once, gate its best after."""

from __future__ import annotations

import optuna
import pytest
from metarec.config import load_settings
from metarec.errors import TuningError, TuningStorageError
from metarec.ops.tuning import create_study, gate_study_best


@pytest.fixture
def settings(tmp_path):
    return load_settings(home=tmp_path / "home", registry={"export_bentoml": False})


def test_the_study_is_created_once_then_loaded(settings, tmp_path):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    assert create_study(settings, storage=storage) == "metarec-tune"
    assert create_study(settings, storage=storage) == "metarec-tune"
    names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
    assert names == ["metarec-tune"]


def test_gating_the_best_needs_the_study_and_a_complete_trial(settings, tmp_path):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    with pytest.raises(TuningStorageError):
        gate_study_best(settings, study="missing", storage=storage, training_set="ts.parquet")
    create_study(settings, study="empty", storage=storage)
    with pytest.raises(TuningError, match="no complete trial"):
        gate_study_best(settings, study="empty", storage=storage, training_set="ts.parquet")
