"""`metarec status`: what the report says about a registry, a rollout, live series and the
schedule, and how the terminal shows it."""

from __future__ import annotations

import re
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import pytest
from metarec.cli.main import run
from metarec.config import load_settings
from metarec.ops import register_candidate, start_canary
from metarec.ops.status import gather_status
from metarec.registry import Registry, VersionRef
from metarec.rollout import RolloutSpec
from metarec.testing.registry import register_fixture, write_fixture_artifact

EXPOSITION = """\
# HELP metarec_online_mae Rolling online MAE
# TYPE metarec_online_mae gauge
metarec_online_mae{model_version="metarec:v1"} 0.81
# HELP metarec_offline_mae Offline MAE
# TYPE metarec_offline_mae gauge
metarec_offline_mae{model_version="metarec:v1"} 0.77
# HELP metarec_offline_hit_rate Offline hit@10 (user-level)
# TYPE metarec_offline_hit_rate gauge
metarec_offline_hit_rate{model_version="metarec:v1"} 0.93
# HELP metarec_drift_psi PSI
# TYPE metarec_drift_psi gauge
metarec_drift_psi{model_version="metarec:v1",statistic="item_popularity"} 0.31
metarec_drift_psi{model_version="metarec:v1",statistic="support_size"} NaN
# HELP metarec_requests_total Requests
# TYPE metarec_requests_total counter
metarec_requests_total{endpoint="recommend",model_version="metarec:v1",status="2xx"} 12.0
"""


@pytest.fixture
def metrics_server():
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            body = EXPOSITION.encode()
            self.send_response(200 if self.path == "/metrics" else 404)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def settings(tmp_path: Path, metrics_server: str):
    return load_settings(
        home=tmp_path / "home",
        registry={"export_bentoml": False},
        rollout={"production_url": metrics_server, "canary_url": "http://127.0.0.1:9"},
        workflows={"retrain_cron": "0 3 * * 1"},
    )


@pytest.fixture
def loop(settings, tmp_path):
    """v1 in production, v2 in staging under an active rollout, then a rejected candidate."""
    with Registry.open(settings) as registry:
        register_fixture(registry, tmp_path / "a1", seed=1)
        register_fixture(registry, tmp_path / "a2", seed=2)
        registry.promote(VersionRef(model="metarec", version=1), actor="t", reason="r")
        state = start_canary(
            settings,
            ref=VersionRef(model="metarec", version=2),
            spec=RolloutSpec(steps=(10, 100)),
            actor="t",
            registry=registry,
        )
        register_candidate(
            settings,
            artifact=write_fixture_artifact(tmp_path / "bad", seed=3, mae=0.99),
            model="metarec",
            policy=None,
            training_set=None,
            actor="cron",
            registry=registry,
        )
    return state


def test_the_report_names_versions_gate_rollout_live_series_and_schedule(settings, loop):
    now = datetime(2026, 12, 8, 12, 0, tzinfo=UTC)  # a Tuesday
    report = gather_status(settings, features=False, now=now)
    assert report.production is not None and report.production.tag == "metarec:v1"
    assert [v.tag for v in report.staging] == ["metarec:v2"]
    gate = report.last_gate
    assert gate is not None and not gate.accepted and gate.actor == "cron"
    assert "mae" in gate.summary
    rollout = report.rollout
    assert rollout is not None and rollout.id == loop.id and rollout.active
    assert (rollout.version, rollout.production_version) == (2, 1)
    [served] = report.live.versions
    assert served.model_version == "metarec:v1"
    assert served.values == {
        "metarec_online_mae": 0.81,
        "metarec_offline_mae": 0.77,
        "metarec_offline_hit_rate": 0.93,
        "metarec_drift_psi[item_popularity]": 0.31,  # the NaN statistic is left out
    }
    assert list(report.live.unreachable) == ["http://127.0.0.1:9"]
    assert report.retrain.next_at == datetime(2026, 12, 14, 3, 0, tzinfo=UTC)
    assert report.retrain.last_at == gate.at
    assert report.freshness is None


def test_an_empty_home_reports_nothing_yet_and_a_bad_cron_is_named(tmp_path):
    settings = load_settings(
        home=tmp_path / "empty",
        rollout={"production_url": "http://127.0.0.1:9", "canary_url": "http://127.0.0.1:9"},
        workflows={"retrain_cron": "61 * * * *"},
    )
    report = gather_status(settings, features=False)
    assert (report.production, report.staging, report.last_gate, report.rollout) == (
        None,
        [],
        None,
        None,
    )
    assert report.live.versions == [] and "http://127.0.0.1:9" in report.live.unreachable
    assert report.retrain.next_at is None and report.retrain.problem


def test_the_terminal_screen_shows_every_part(settings, loop, monkeypatch, capsys):
    monkeypatch.setenv("METAREC_HOME", str(settings.home))
    monkeypatch.setenv("METAREC_REGISTRY__EXPORT_BENTOML", "false")
    monkeypatch.setenv("METAREC_ROLLOUT__PRODUCTION_URL", settings.rollout.production_url)
    monkeypatch.setenv("METAREC_ROLLOUT__CANARY_URL", settings.rollout.canary_url)
    monkeypatch.setenv("COLUMNS", "200")
    assert run(["status", "--no-features"]) == 0
    out = capsys.readouterr().out
    assert "production │ metarec:v1" in out
    assert "staging    │ metarec:v2" in out
    assert "rejected" in out and "by cron" in out
    assert "active Initializing: v2 vs production v1" in out or "active " in out
    assert "drift_psi[item_popularity]" in out and "0.310" in out
    # no feedback scored for the hit rate yet: a row that says so, never 0.000
    assert re.search(r"online_hit_rate +│ +— ", out) and "—: not exported (no feedback yet)" in out
    # the card's hit@10 is user-level: named so, never as a hit rate beside the online one
    assert re.search(r"offline_hit@10 \(user-level\) +│ +0\.930 ", out)
    live = out[out.index("Live quality") : out.index("not reachable")]
    assert "offline_hit_rate" not in live and "Not comparable." in live
    assert "not reachable: http://127.0.0.1:9 (ConnectError)" in out
    assert "│ metarec:v1 │" in out or "┃ metarec:v1 ┃" in out  # one column per served version
    assert "(cron '0 3 * * 1')" in out
    assert run(["status", "--no-features", "--no-live", "--json"]) == 0
    assert '"model": "metarec"' in capsys.readouterr().out


def test_the_no_feedback_caption_shows_only_when_a_value_is_missing():
    from metarec.cli.status import _live_tables
    from metarec.ops.live_series import LiveSeries, VersionSeries

    complete = {"metarec_online_mae": 0.8, "metarec_online_hit_rate": 0.2}

    def caption(values: dict[str, float]) -> str | None:
        live = LiveSeries(
            source="scrape", versions=[VersionSeries(model_version="m:v1", values=values)]
        )
        report = SimpleNamespace(live=live)
        return _live_tables(report)[0].caption

    assert caption(complete) is None
    assert caption({"metarec_online_mae": 0.8}) == "—: not exported (no feedback yet)"
