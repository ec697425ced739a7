"""`metarec pipelines schedule`: the real KFP client against a local stand-in of the KFP API."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest
from metarec.compute import ComputeSpec
from metarec.errors import MetaRecError
from metarec.workflows.kfp_schedule import kfp_cron, schedule_pipeline

pytestmark = pytest.mark.integration


class _KfpApi(BaseHTTPRequestHandler):
    requests: ClassVar[list[tuple[str, str, dict]]] = []

    def _reply(self, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self.requests.append(("GET", self.path, {}))
        self._reply({"experiments": [], "total_size": 0})

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
        self.requests.append(("POST", self.path, body))
        if self.path.startswith("/apis/v2beta1/experiments"):
            self._reply({"experiment_id": "exp-1", "display_name": body.get("display_name")})
        else:
            self._reply({"recurring_run_id": "rr-1", "display_name": body.get("display_name")})

    def log_message(self, *args):
        pass


@pytest.fixture
def kfp_api():
    _KfpApi.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _KfpApi)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", _KfpApi.requests
    server.shutdown()


def test_schedule_creates_a_recurring_run_with_the_compiled_pipeline(kfp_api):
    host, requests = kfp_api
    run_id = schedule_pipeline(
        host=host,
        cron="0 3 * * 1",
        compute=ComputeSpec(gpu_count=1),
        params={"home": "/var/lib/metarec"},
    )
    assert run_id == "rr-1"
    body = next(b for method, path, b in requests if path.startswith("/apis/v2beta1/recurringruns"))
    assert body["trigger"]["cron_schedule"]["cron"] == "0 0 3 * * 1"
    assert body["experiment_id"] == "exp-1"
    assert body["runtime_config"]["parameters"] == {"home": "/var/lib/metarec"}
    spec = body["pipeline_spec"]
    executors = spec["pipeline_spec"]["deploymentSpec"]["executors"]
    assert (
        executors["exec-train-op"]["container"]["resources"]["accelerator"]["resourceCount"] == "1"
    )
    platform = spec["platform_spec"]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert platform["exec-train-op"]["tolerations"][0]["key"] == "nvidia.com/gpu"


def test_cron_needs_five_or_six_fields():
    assert kfp_cron("0 0 3 * * 1") == "0 0 3 * * 1"
    with pytest.raises(MetaRecError, match="five fields"):
        kfp_cron("daily")
