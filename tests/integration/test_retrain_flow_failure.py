"""The retrain flow's on_failure hook sends a retrain_failed notification (a real Prefect run on
the session's ephemeral server, a real webhook receiver on 127.0.0.1)."""

from __future__ import annotations

import pytest
from metarec.errors import FeatureStoreError, GateRejectedError
from metarec.testing.webhooks import Receiver
from metarec.workflows.prefect_flows import notify_failed_retrain
from prefect import flow

pytestmark = pytest.mark.integration


@flow(name="retrain-failing", on_failure=[notify_failed_retrain])
def failing_retrain(home: str, error: str) -> None:
    if error == "gate":
        raise GateRejectedError("The evaluation gate rejected a1: mae.", fix="see the decision.")
    raise FeatureStoreError("Feast registry unreachable: connection refused.", fix="start it.")


@pytest.fixture
def receiver():
    with Receiver() as running:
        yield running


@pytest.fixture
def home(tmp_path, receiver, monkeypatch):
    monkeypatch.setenv("METAREC_NOTIFICATIONS__WEBHOOKS", f'[{{"url": "{receiver.url}"}}]')
    return str(tmp_path / "home")


def test_a_failed_run_is_notified_with_its_error_and_run(prefect_server, home, receiver):
    with pytest.raises(FeatureStoreError):
        failing_retrain(home=home, error="store")
    [body] = receiver.bodies("/")
    assert (body["kind"], body["model"]) == ("retrain_failed", "metarec")
    assert "Feast registry unreachable" in body["reason"]
    assert body["details"]["flow"] == "retrain-failing"
    assert body["details"]["flow_run_id"]


def test_a_gate_rejection_is_not_reported_again_as_a_failed_retrain(prefect_server, home, receiver):
    with pytest.raises(GateRejectedError):
        failing_retrain(home=home, error="gate")
    assert receiver.received == []


def test_the_retrain_flow_carries_the_hook():
    from metarec.workflows.prefect_flows import retrain_flow

    assert retrain_flow.on_failure_hooks == [notify_failed_retrain]
