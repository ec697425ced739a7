"""The processes behind the chart answer the probe paths the chart renders for them.

The paths and ports are read from the rendered Deployments (not restated here): the API app
answers its liveness and readiness paths with 200, and a real `metarec rollout controller`
started with the rendered arguments answers them on the port its probes name. (The adaptation
service's /livez and /readyz are exercised against BentoML in tests/integration/test_serving.py.)
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from metarec.api import create_app
from metarec.config import load_settings

pytestmark = pytest.mark.integration


def probes(manifests, deployment: str, container: str) -> dict[str, Any]:
    """{"liveness"/"readiness": path, "port": containerPort, "args": args} of one container."""
    pod = manifests.get("Deployment", deployment)["spec"]["template"]["spec"]
    (c,) = [c for c in pod["containers"] if c["name"] == container]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    live, ready = c["livenessProbe"]["httpGet"], c["readinessProbe"]["httpGet"]
    assert live["port"] == ready["port"], "liveness and readiness on different ports"
    return {
        "liveness": live["path"],
        "readiness": ready["path"],
        "port": ports[live["port"]],
        "args": c["args"],
    }


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_the_api_answers_the_paths_its_chart_probes(manifests, chart, tmp_path: Path):
    rendered = probes(manifests, chart.name("api"), "api")
    assert rendered["args"][rendered["args"].index("--port") + 1] == str(rendered["port"])
    settings = load_settings(
        home=tmp_path / "home",
        registry={"export_bentoml": False, "read_requires_token": True, "api_token": "t"},
    )
    with TestClient(create_app(settings)) as client:  # no Authorization header, as a kubelet
        for kind in ("liveness", "readiness"):
            response = client.get(rendered[kind])
            assert response.status_code == 200, (kind, rendered[kind], response.text)
            assert response.json()["status"] == "ok"


@pytest.mark.slow
def test_the_rollout_controller_answers_the_paths_its_chart_probes(default, chart, tmp_path):
    rendered = probes(default, chart.name("rollout-controller"), "rollout-controller")
    args = rendered["args"]
    assert args[args.index("--health-port") + 1] == str(rendered["port"])
    port = free_port()  # the rendered port may be taken on this machine
    args[args.index("--health-port") + 1] = str(port)
    env = {
        **os.environ,
        "METAREC_HOME": str(tmp_path / "home"),
        "METAREC_REGISTRY__EXPORT_BENTOML": "false",
        # The chart's gateway-api router needs a cluster; the health server does not care.
        "METAREC_ROLLOUT__ROUTER__KIND": "local",
        "METAREC_ROLLOUT__ROUTER__LISTEN_PORT": str(free_port()),
    }
    metarec = Path(sys.executable).parent / "metarec"
    process = subprocess.Popen(
        [str(metarec), *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(base + rendered["readiness"], timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, process.stdout.read().decode()
            assert time.monotonic() < deadline, "the controller never became ready"
            time.sleep(0.2)
        assert httpx.get(base + rendered["liveness"], timeout=2).status_code == 200
        assert httpx.get(f"{base}/not-a-probe", timeout=2).status_code == 503
    finally:
        process.terminate()
        process.wait(timeout=30)
