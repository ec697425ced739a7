"""The soak benchmark: errors counted by class, and a few seconds of it against a real service."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import shutil
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from metarec.config import Settings, load_settings
from metarec.serving.process import free_port
from metarec.testing.serving import mark_validated, train_and_register

REPO = Path(__file__).resolve().parents[3]
# The soak measures serving, not quality: the served model is trained as briefly as it can be.
BRIEF_TRAINING = {
    "max_steps": 10,
    "eval_every": 10,
    "ranker_max_steps": 10,
    "ranker_eval_every": 10,
    "factor_pretrain_steps": 10,
    "factor_max_steps": 5,
}
# What the stand-in server answers on each path.
ANSWERS = {"/recommend": 200, "/predict": 422, "/feedback": 503}


def _benchmark():
    """benchmarks/soak.py as a module (registered: its dataclass needs its module)."""
    name = "metarec_soak_benchmark"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / "soak.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


class _Answer(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["content-length"]))
        body = b"{}"
        self.send_response(ANSWERS[self.path])
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def stand_in():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Answer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_status_classes():
    soak = _benchmark()
    assert [soak.status_class(s) for s in (200, 204, 400, 404, 413, 499, 500, 504, None)] == [
        "2xx", "2xx", "4xx", "4xx", "4xx", "4xx", "5xx", "5xx", "connection",
    ]  # fmt: skip


def test_every_answer_is_counted_in_its_class(stand_in):
    soak = _benchmark()
    pool = [(e, b"{}") for e in ("recommend", "predict", "feedback")]
    sent = asyncio.run(soak.drive(stand_in, pool, concurrency=3, duration=1.0, headers={}))
    assert len(sent) >= 6
    for one in sent:
        expected = soak.status_class(ANSWERS[f"/{one.endpoint}"])
        assert one.status_class == expected, one
    refused = asyncio.run(
        soak.drive(f"http://127.0.0.1:{free_port()}", pool, concurrency=2, duration=0.3, headers={})
    )
    assert refused and {one.status_class for one in refused} == {"connection"}


def test_the_report_counts_classes_per_window_and_judges_growth():
    soak = _benchmark()
    args = soak.parse_args(["--minutes", "0.1", "--window-seconds", "2"])
    sent = [
        soak.Sent(0.5, "recommend", "2xx", 0.010),
        soak.Sent(1.0, "predict", "4xx", 0.020),
        soak.Sent(2.5, "feedback", "5xx", 0.030),
        soak.Sent(4.5, "recommend", "connection", 0.040),
    ]
    mb = 2**20
    samples = [(0.0, 100 * mb), (2.0, 150 * mb), (4.0, 200 * mb), (6.0, 210 * mb)]
    result = soak.report(sent, samples, args=args)
    assert [w["requests"] for w in result["per_window"]] == [2, 1, 1]
    assert [(w["2xx"], w["4xx"], w["5xx"], w["connection"]) for w in result["per_window"]] == [
        (1, 1, 0, 0), (0, 0, 1, 0), (0, 0, 0, 1),
    ]  # fmt: skip
    assert result["rss_mb"] == {"start": 100.0, "minute_2": 200.0, "end": 210.0}
    assert result["rss_growth_minute_2_to_end_pct"] == 5.0
    assert result["pass"] is False  # a 5xx (and a connection error)
    clean = soak.report([s for s in sent if s.status_class in ("2xx", "4xx")], samples, args=args)
    assert clean["pass"] is True
    grown = soak.report(sent[:2], [*samples[:-1], (6.0, 230 * mb)], args=args)
    assert grown["rss_growth_minute_2_to_end_pct"] == 15.0
    assert grown["pass"] is False


@pytest.fixture(scope="module")
def served_home(synthetic_home: Settings, tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("soak")
    shutil.copytree(synthetic_home.paths.home, root / "home")
    settings = load_settings(home=root / "home", registry={"export_bentoml": False})
    training_set = mark_validated(
        settings.paths.training_sets / "synthetic.parquet", root / "validated" / "ts.parquet"
    )
    train_and_register(settings, training_set, workdir=root / "work", config=BRIEF_TRAINING)
    return root / "home", training_set


@pytest.mark.integration
@pytest.mark.slow
def test_a_short_soak_prints_one_json_object(served_home, tmp_path, capsys):
    home, training_set = served_home
    out = tmp_path / "soak.json"
    code = _benchmark().main(
        ["--home", str(home), "--training-set", str(training_set), "--minutes", "0.1",
         "--window-seconds", "2", "--concurrency", "4", "--bad-fraction", "0.2",
         "--out", str(out)]
    )  # fmt: skip
    result = json.loads(capsys.readouterr().out)
    assert json.loads(out.read_text()) == result
    assert result["requests"] == sum(result[c] for c in ("2xx", "4xx", "5xx", "connection"))
    assert result["2xx"] > 0 and result["4xx"] > 0  # the deliberately invalid requests
    assert result["5xx"] == 0 and result["connection"] == 0
    assert set(result["by_endpoint"]) == {"recommend", "predict", "feedback"}
    assert all(result["by_endpoint"][e]["2xx"] > 0 for e in result["by_endpoint"])
    assert len(result["per_window"]) == 3
    for window in result["per_window"]:
        assert set(window["latency"]) == {"recommend", "predict", "feedback"}
        assert window["rss_mb"] > 0
    assert result["rss_mb"]["start"] > 0 and result["rss_mb"]["minute_2"] > 0
    assert isinstance(result["rss_growth_minute_2_to_end_pct"], float)
    assert result["pass"] is (result["rss_growth_minute_2_to_end_pct"] < 10.0)
    assert code == (0 if result["pass"] else 1)
