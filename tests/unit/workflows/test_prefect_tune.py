"""The Prefect `tune` flow: its parameters are the tuning request's; it is deployed unscheduled."""

import inspect

from metarec.config import load_settings
from metarec.ops.tuning import TuneRequest
from metarec.workflows import prefect_tune
from metarec.workflows.deployments import local_deployments


def test_tune_is_deployed_without_a_schedule(tmp_path):
    settings = load_settings(home=tmp_path)
    deployments = {d.name: d for d in local_deployments(settings)}
    assert not deployments["tune"].schedules, "a study is started by hand, not on a cron"
    assert deployments["tune"].parameters == {"home": str(settings.paths.home)}


def test_the_flow_hands_its_parameters_to_the_tuning_use_case(monkeypatch):
    seen = {}

    def fake_tune(settings, request):
        seen["request"] = request
        return prefect_tune.TuneOutcome(
            study="s",
            objective="val_mae",
            direction="minimize",
            counts={"complete": 3},
            best_trial=1,
            best_value=0.8,
            best_params={"inner_lr": 0.01},
            trials=[],
            reports={},
            worker_exit_codes=[0, 0],
        )

    monkeypatch.setattr(prefect_tune, "tune", fake_tune)
    # The task's function itself (a task called outside a flow run would start a Prefect API).
    monkeypatch.setattr(prefect_tune, "study_task", prefect_tune.run_study)
    out = prefect_tune.tune_flow.fn(trials=3, workers=2, study="s", space="space.yaml")
    request = seen["request"]
    assert (request.trials, request.workers, request.study) == (3, 2, "s")
    assert str(request.space) == "space.yaml" and request.register_best is True
    assert out["best_params"] == {"inner_lr": 0.01} and "trials" not in out
    flow_parameters = set(inspect.signature(prefect_tune.tune_flow.fn).parameters) - {"home"}
    assert flow_parameters <= set(TuneRequest.model_fields)
