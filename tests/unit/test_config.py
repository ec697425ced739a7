from pathlib import Path

import pytest
from metarec.config import load_settings
from metarec.environment import TELEMETRY_OFF, apply_process_environment, process_environment
from metarec.errors import ConfigError


def test_defaults_put_every_embedded_location_under_home(tmp_path):
    settings = load_settings(home=tmp_path)
    paths = settings.paths
    for location in (
        paths.snapshots,
        paths.feast,
        paths.artifacts,
        paths.prefect_home,
        paths.bentoml_home,
    ):
        assert location.is_relative_to(tmp_path)
    assert settings.feast.environment == "local"


def test_environment_overrides_yaml_which_overrides_defaults(tmp_path, monkeypatch):
    config = tmp_path / "metarec.yaml"
    config.write_text(f"home: {tmp_path / 'from-yaml'}\nfeast:\n  project: yamlproject\n")
    monkeypatch.delenv("METAREC_HOME", raising=False)
    monkeypatch.setenv("METAREC_FEAST__PROJECT", "envproject")
    settings = load_settings(config_file=config)
    assert settings.home == tmp_path / "from-yaml"
    assert settings.feast.project == "envproject"


def test_config_file_from_environment_variable(tmp_path, monkeypatch):
    config = tmp_path / "metarec.yaml"
    config.write_text("feast:\n  environment: cluster\n")
    monkeypatch.setenv("METAREC_CONFIG", str(config))
    assert load_settings().feast.environment == "cluster"


def test_unknown_key_in_yaml_is_named(tmp_path):
    config = tmp_path / "metarec.yaml"
    config.write_text("feast:\n  enviroment: cluster\n")
    with pytest.raises(ConfigError, match=r"feast\.enviroment"):
        load_settings(config_file=config)


def test_invalid_value_and_missing_file_are_config_errors(tmp_path):
    config = tmp_path / "metarec.yaml"
    config.write_text("feast:\n  environment: moon\n")
    with pytest.raises(ConfigError, match=r"feast\.environment"):
        load_settings(config_file=config)
    with pytest.raises(ConfigError, match="not found"):
        load_settings(config_file=tmp_path / "absent.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("feast: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(config_file=broken)


def test_telemetry_is_off_by_default_and_homes_point_into_metarec_home(tmp_path):
    environ: dict[str, str] = {"PREFECT_HOME": "/custom/prefect", "DO_NOT_TRACK": "0"}
    apply_process_environment(load_settings(home=tmp_path), environ=environ)
    for name, value in TELEMETRY_OFF.items():
        assert environ[name] == value
    assert environ["PREFECT_HOME"] == "/custom/prefect"  # the user's own choice is kept
    assert Path(environ["BENTOML_HOME"]).is_relative_to(tmp_path)


def test_telemetry_can_be_allowed_explicitly(tmp_path):
    values = process_environment(load_settings(home=tmp_path, telemetry=True))
    assert "DO_NOT_TRACK" not in values


def test_homes_metarec_set_follow_the_active_home_but_user_choices_stay(tmp_path):
    environ: dict[str, str] = {"PREFECT_HOME": "/custom/prefect"}
    apply_process_environment(load_settings(home=tmp_path / "a"), environ=environ)
    apply_process_environment(load_settings(home=tmp_path / "b"), environ=environ)
    assert Path(environ["BENTOML_HOME"]).is_relative_to(tmp_path / "b")
    assert environ["PREFECT_HOME"] == "/custom/prefect"
