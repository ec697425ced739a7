"""The service's drift alarm: edge-triggered per statistic, re-armed below 80 % of the
threshold, and a drift_alert notification to the webhooks that want it."""

from __future__ import annotations

from metarec.config import load_settings
from metarec.serving.drift_alerts import DriftAlarm, drift_alarm
from metarec.testing.webhooks import Receiver


def test_the_alarm_fires_once_per_crossing_and_rearms_below_80_percent():
    fired = []
    alarm = DriftAlarm(threshold=0.25, alert=lambda *alert: fired.append(alert))
    for psi in (0.1, 0.3, 0.4, 0.22, 0.3, 0.19, 0.26):
        alarm({"item_popularity": psi, "support_size": None, "predicted_score": 0.05}, 500)
    assert fired == [("item_popularity", 0.3, 500), ("item_popularity", 0.26, 500)]


def test_no_alarm_without_a_webhook_that_wants_drift_alerts(tmp_path):
    settings = load_settings(
        home=tmp_path,
        notifications={"webhooks": [{"url": "http://127.0.0.1:9", "events": ["promoted"]}]},
    )
    assert drift_alarm(settings, model_version="metarec:v3") is None


def test_a_crossing_is_sent_as_a_drift_alert_notification(tmp_path):
    with Receiver() as receiver:
        settings = load_settings(
            home=tmp_path,
            serving={"drift_alert_psi": 0.2},
            notifications={"webhooks": [{"url": receiver.url}]},
        )
        alarm = drift_alarm(settings, model_version="metarec:v3")
        assert alarm is not None and alarm.threshold == 0.2
        alarm({"item_popularity": 0.43}, 800)
        assert receiver.arrived.wait(5)
    [body] = receiver.bodies("/")
    assert (body["kind"], body["model"], body["version"]) == ("drift_alert", "metarec", 3)
    assert body["reason"].startswith("PSI of item_popularity 0.43 ≥ 0.2 over the last 800")
    assert body["details"] == {"statistic": "item_popularity", "psi": 0.43, "window_requests": 800}
