"""The `validate_features` pipeline component: typed in, JSON-able out, a dedicated error."""

import json
import shutil
import subprocess
import sys

import pandas as pd
import pytest
from metarec.components.validate_features import ValidationOutput, validate_features
from metarec.config import load_settings
from metarec.errors import ValidationFailedError
from metarec.features.fingerprint import dataset_fingerprint
from metarec.features.training_set import manifest_path, read_manifest
from metarec.validation.gate import build_reference_profile, profile_store
from metarec.validation.record import read_validation_record

pytestmark = pytest.mark.integration


@pytest.fixture
def home(synthetic_home, tmp_path):
    settings = load_settings(home=tmp_path / "home")
    folder = settings.paths.training_sets
    folder.mkdir(parents=True)
    source = synthetic_home.paths.training_sets / "synthetic.parquet"
    shutil.copyfile(source, folder / source.name)
    shutil.copyfile(manifest_path(source), manifest_path(folder / source.name))
    build_reference_profile(settings, training_set=folder / source.name)
    return settings


def test_passing_training_set_returns_json_able_lineage(home):
    training_set = home.paths.training_sets / "synthetic.parquet"
    output = validate_features(training_set=str(training_set), home=str(home.paths.home))
    assert isinstance(output, ValidationOutput)
    assert output.success
    assert output.dataset_fingerprint == read_manifest(training_set).fingerprint
    assert output.suite_name == "meta_training"
    assert output.reference_profile == "meta_training@v1"
    assert json.loads(output.model_dump_json())["result_id"] == output.result_id
    record = read_validation_record(training_set)
    assert record.result_id == output.result_id and record.success
    # idempotent: the same input gives the same verdict again
    again = validate_features(training_set=str(training_set), home=str(home.paths.home))
    assert again.success and again.dataset_fingerprint == output.dataset_fingerprint


def test_failing_training_set_raises_listing_every_failure(home, tmp_path, monkeypatch):
    monkeypatch.setenv("METAREC_HOME", str(home.paths.home))  # home=None reads it
    source = home.paths.training_sets / "synthetic.parquet"
    frame = pd.read_parquet(source)
    frame.loc[frame.index[::10], "rating"] = 0
    frame.loc[frame.index[::10], "occupation"] = "astronaut"
    bad = tmp_path / "bad.parquet"
    frame.to_parquet(bad, index=False)
    manifest = read_manifest(source).model_copy(
        update={"fingerprint": dataset_fingerprint(pd.read_parquet(bad)), "path": str(bad)}
    )
    manifest_path(bad).write_text(manifest.model_dump_json())
    profile_before = profile_store(home).versions("meta_training")

    with pytest.raises(ValidationFailedError) as error:
        validate_features(training_set=str(bad))
    failures = error.value.failures
    assert "rating_in_range" in failures
    assert "expect_column_values_to_be_in_set(occupation)" in failures
    assert all(name in str(error.value) for name in failures)
    assert error.value.report and error.value.report.endswith(".html")
    assert not read_validation_record(bad).success
    assert profile_store(home).versions("meta_training") == profile_before


def test_component_imports_no_orchestrator_and_no_great_expectations_up_front():
    code = (
        "import sys, metarec.components.validate_features; "
        "bad = [m for m in sys.modules if m.split('.')[0] in "
        "('prefect', 'kfp', 'great_expectations')]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
