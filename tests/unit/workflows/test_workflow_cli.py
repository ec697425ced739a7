"""`metarec flows` / `metarec pipelines` come from the workflows plugin (entry points)."""

import json

import yaml
from metarec.cli.main import run
from metarec.config import load_settings
from metarec.workflows.deployments import local_deployments


def test_pipelines_compile_uses_the_configured_compute_spec(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("METAREC_TRAINING_COMPUTE__GPU_COUNT", "2")
    out = tmp_path / "retrain.yaml"
    assert run(["pipelines", "compile", "--out", str(out)]) == 0
    tasks = next(yaml.safe_load_all(out.read_text()))["root"]["dag"]["tasks"]
    # 2 GPUs are 2 training processes: a TrainJob of 1 node × 2 GPUs, launched by the pipeline.
    request = tasks["train-distributed-op"]["inputs"]["parameters"]["request"]
    compute = json.loads(request["runtimeValue"]["constant"])["compute"]
    assert (compute["nodes"], compute["gpu_count"]) == (1, 2)
    monkeypatch.setenv("METAREC_TRAINING_COMPUTE__GPU_COUNT", "1")
    assert run(["pipelines", "compile", "--out", str(out)]) == 0
    spec = next(yaml.safe_load_all(out.read_text()))
    container = spec["deploymentSpec"]["executors"]["exec-train-op"]["container"]
    assert container["resources"]["accelerator"]["resourceCount"] == "1"


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
    assert set(deployments) == {"materialize", "retrain", "tune"}
    assert deployments["retrain"].schedules[0].schedule.cron == "15 4 * * 2"
    assert (
        deployments["materialize"].schedules[0].schedule.cron == settings.workflows.materialize_cron
    )
    assert deployments["retrain"].parameters["home"] == str(settings.paths.home)


class _Completed:
    """What a Prefect flow returns with return_state=True, reduced to what the CLI reads."""

    def is_completed(self):
        return True

    def result(self):
        return {"ok": True}


def test_flows_run_retrain_passes_the_canary_options(tmp_path, monkeypatch, capsys):
    calls = []

    def fake_flow(**kwargs):
        calls.append(kwargs)
        return _Completed()

    monkeypatch.setenv("METAREC_HOME", str(tmp_path / "home"))
    monkeypatch.setattr("metarec.workflows.prefect_flows.retrain_flow", fake_flow)
    argv = ["flows", "run", "retrain", "--canary-steps", "25,100", "--canary-interval", "5s"]
    assert run(argv) == 0
    assert calls[0]["canary"] == {"steps": [25, 100], "interval_s": 5.0}
    assert run(["flows", "run", "retrain"]) == 0
    assert calls[1]["canary"] is None  # RolloutSpec defaults apply
    assert run(["flows", "run", "retrain", "--canary-interval", "soon"]) == 2
    assert "not a positive duration" in capsys.readouterr().err
    assert len(calls) == 2  # nothing ran with the bad option


def test_pipelines_compile_takes_the_training_jobs_engine_runtime_and_service_account(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("METAREC_TRAINING_COMPUTE__NODES", "2")
    out = tmp_path / "retrain.yaml"
    flags = ["--training-engine", "training-operator", "--training-runtime", "torch-big"]
    flags += ["--training-service-account", "metarec-train"]
    assert run(["pipelines", "compile", "--out", str(out), *flags]) == 0
    tasks = next(yaml.safe_load_all(out.read_text()))["root"]["dag"]["tasks"]
    request = tasks["train-distributed-op"]["inputs"]["parameters"]["request"]
    options = json.loads(request["runtimeValue"]["constant"])["options"]
    assert options["engine"] == "training-operator"
    assert (options["runtime_name"], options["service_account"]) == ("torch-big", "metarec-train")
    assert run(["pipelines", "compile", "--out", str(out), "--training-engine", "argo"]) != 0
