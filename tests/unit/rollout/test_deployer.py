"""The deploy step's command line: `serve --version N --port P`, every other argument kept."""

import pytest
from metarec.config import load_settings
from metarec.errors import ConfigError, DeployError
from metarec.rollout.deployer import serve_args

PINNED = ["serve", "--version", "7", "--port", "8000"]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["serve", "--stage", "production", "--port", "3000"], PINNED),
        (["serve", "--version", "3", "--port", "3000"], PINNED),
        (["serve", "--version=3", "--stage=staging", "--port=1"], PINNED),
        (["serve", "--host", "0.0.0.0", "--stage", "production", "--max-k", "5"],
         [*PINNED, "--host", "0.0.0.0", "--max-k", "5"]),
        (["serve"], PINNED),
    ],
)  # fmt: skip
def test_serve_args_replace_version_stage_and_port_only(args, expected):
    assert serve_args(args, version=7, port=8000) == expected


@pytest.mark.parametrize("args", [[], ["api", "--port", "8000"], ["rollout", "controller"]])
def test_a_container_that_does_not_serve_is_refused(args):
    with pytest.raises(DeployError, match=r"rollout\.deploy\.container"):
        serve_args(args, version=7, port=3000)


def test_deploy_settings_default_to_none_and_flagger_needs_its_canary(tmp_path, monkeypatch):
    assert load_settings(home=tmp_path).rollout.deploy.kind == "none"
    monkeypatch.setenv("METAREC_ROLLOUT__DEPLOY__KIND", "kubernetes")
    monkeypatch.setenv("METAREC_ROLLOUT__DEPLOY__ENGINE", "flagger")
    with pytest.raises(ConfigError, match="flagger_canary is required"):
        load_settings(home=tmp_path)
    monkeypatch.setenv("METAREC_ROLLOUT__DEPLOY__FLAGGER_CANARY", "mr-metarec-serving")
    monkeypatch.setenv("METAREC_ROLLOUT__DEPLOY__DEPLOYMENT", "mr-metarec-serving-production")
    deploy = load_settings(home=tmp_path).rollout.deploy
    assert (deploy.flagger_canary, deploy.deployment) == (
        "mr-metarec-serving", "mr-metarec-serving-production"
    )  # fmt: skip
