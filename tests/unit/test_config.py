import os
import re
from pathlib import Path

import pytest
from metarec.config import load_settings
from metarec.environment import TELEMETRY_OFF, apply_process_environment, process_environment
from metarec.errors import ConfigError
from metarec.router_config import GatewayAPIRouterConfig, HTTPRouterConfig, LocalRouterConfig


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


# ---------------------------------------------------------------- rollout.router: a tagged union


@pytest.fixture
def no_rollout_env(monkeypatch):
    for name in list(os.environ):
        if name.startswith("METAREC_ROLLOUT__") or name == "METAREC_CONFIG":
            monkeypatch.delenv(name)
    return monkeypatch


def test_the_default_router_is_the_local_one(tmp_path, no_rollout_env):
    router = load_settings(home=tmp_path).rollout.router
    assert router == LocalRouterConfig(listen_host="127.0.0.1", listen_port=8080)


def test_nested_environment_variables_reach_the_router_union(tmp_path, no_rollout_env):
    no_rollout_env.setenv("METAREC_ROLLOUT__ROUTER__KIND", "gateway-api")
    no_rollout_env.setenv("METAREC_ROLLOUT__ROUTER__NAMESPACE", "ml")
    no_rollout_env.setenv("METAREC_ROLLOUT__ROUTER__HTTPROUTE", "recs")
    router = load_settings(home=tmp_path).rollout.router
    assert router == GatewayAPIRouterConfig(namespace="ml", httproute="recs")
    no_rollout_env.delenv("METAREC_ROLLOUT__ROUTER__NAMESPACE")
    no_rollout_env.delenv("METAREC_ROLLOUT__ROUTER__HTTPROUTE")
    no_rollout_env.setenv("METAREC_ROLLOUT__ROUTER__KIND", "http")
    no_rollout_env.setenv("METAREC_ROLLOUT__ROUTER__URL", "http://router:8080")
    assert load_settings(home=tmp_path).rollout.router == HTTPRouterConfig(url="http://router:8080")


def test_a_field_without_kind_is_one_of_the_default_local_router(tmp_path, no_rollout_env):
    no_rollout_env.setenv("METAREC_ROLLOUT__ROUTER__LISTEN_PORT", "9090")
    router = load_settings(home=tmp_path).rollout.router
    assert router == LocalRouterConfig(listen_port=9090)


def test_yaml_reaches_the_router_union_and_the_environment_completes_it(tmp_path, no_rollout_env):
    config = tmp_path / "metarec.yaml"
    config.write_text("rollout:\n  router:\n    kind: gateway-api\n    httproute: recs\n")
    router = load_settings(config_file=config, home=tmp_path).rollout.router
    assert router == GatewayAPIRouterConfig(httproute="recs")
    no_rollout_env.setenv("METAREC_ROLLOUT__ROUTER__NAMESPACE", "ml")
    router = load_settings(config_file=config, home=tmp_path).rollout.router
    assert router == GatewayAPIRouterConfig(namespace="ml", httproute="recs")


def test_a_field_of_another_router_kind_is_refused_naming_its_kind(tmp_path, no_rollout_env):
    no_rollout_env.setenv("METAREC_ROLLOUT__ROUTER__NAMESPACE", "ml")  # local has no namespace
    with pytest.raises(ConfigError, match=r"'namespace' is a setting of router kind gateway-api"):
        load_settings(home=tmp_path)
    config = tmp_path / "metarec.yaml"
    config.write_text("rollout:\n  router:\n    kind: http\n    listen_port: 9\n")
    no_rollout_env.delenv("METAREC_ROLLOUT__ROUTER__NAMESPACE")
    with pytest.raises(ConfigError, match=r"METAREC_ROLLOUT__ROUTER__KIND=local") as error:
        load_settings(config_file=config, home=tmp_path)
    assert "'listen_port' is a setting of router kind local, not of kind http" in str(error.value)


def test_an_unknown_router_kind_is_refused(tmp_path, no_rollout_env):
    no_rollout_env.setenv("METAREC_ROLLOUT__ROUTER__KIND", "istio")
    with pytest.raises(ConfigError, match=r"unknown router kind 'istio'.*local, http, gateway-api"):
        load_settings(home=tmp_path)


@pytest.mark.parametrize(
    ("old", "value", "new"),
    [
        ("METAREC_ROLLOUT__HTTPROUTE", "recs", "METAREC_ROLLOUT__ROUTER__HTTPROUTE"),
        ("METAREC_ROLLOUT__NAMESPACE", "ml", "METAREC_ROLLOUT__ROUTER__NAMESPACE"),
        ("METAREC_ROLLOUT__ROUTER_URL", "http://r:8", "METAREC_ROLLOUT__ROUTER__URL"),
        ("METAREC_ROLLOUT__LISTEN_PORT", "9", "METAREC_ROLLOUT__ROUTER__LISTEN_PORT"),
        ("METAREC_ROLLOUT__ROUTER", "gateway-api", "METAREC_ROLLOUT__ROUTER__KIND=gateway-api"),
    ],
)
def test_an_old_flat_router_variable_names_its_new_key(tmp_path, no_rollout_env, old, value, new):
    no_rollout_env.setenv(old, value)
    with pytest.raises(ConfigError, match=re.escape(new)):
        load_settings(home=tmp_path)


def test_an_old_flat_router_key_in_yaml_names_its_new_key(tmp_path, no_rollout_env):
    config = tmp_path / "metarec.yaml"
    config.write_text("rollout:\n  production_backend: prod\n")
    with pytest.raises(ConfigError, match=r"rollout\.router\.production_backend") as error:
        load_settings(config_file=config, home=tmp_path)
    assert "kind gateway-api" in str(error.value)
