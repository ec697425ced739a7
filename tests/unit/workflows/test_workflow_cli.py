"""`metarec flows` / `metarec pipelines` come from the workflows plugin (entry points)."""

import yaml
from metarec.cli.main import run
from metarec.config import load_settings
from metarec.workflows.deployments import local_deployments


def test_pipelines_compile_uses_the_configured_compute_spec(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("METAREC_TRAINING_COMPUTE__GPU_COUNT", "2")
    out = tmp_path / "retrain.yaml"
    assert run(["pipelines", "compile", "--out", str(out)]) == 0
    spec = next(yaml.safe_load_all(out.read_text()))
    accelerator = spec["deploymentSpec"]["executors"]["exec-train-op"]["container"]["resources"][
        "accelerator"
    ]
    assert accelerator["resourceCount"] == "2"


def test_flows_and_pipelines_have_help(capsys):
    for command in (
        ["flows", "--help"],
        ["flows", "run", "--help"],
        ["flows", "serve", "--help"],
        ["pipelines", "compile", "--help"],
        ["pipelines", "run-local", "--help"],
    ):
        assert run(command) == 0
        assert "Usage" in capsys.readouterr().out


def test_local_deployments_carry_the_cron_schedules(tmp_path):
    settings = load_settings(home=tmp_path, workflows={"retrain_cron": "15 4 * * 2"})
    deployments = {d.name: d for d in local_deployments(settings)}
    assert set(deployments) == {"materialize", "retrain"}
    assert deployments["retrain"].schedules[0].schedule.cron == "15 4 * * 2"
    assert (
        deployments["materialize"].schedules[0].schedule.cron == settings.workflows.materialize_cron
    )
    assert deployments["retrain"].parameters["home"] == str(settings.paths.home)
