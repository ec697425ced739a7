"""A real `metarec rollout controller --health-port P` serves the registry's series on /metrics.

The command wires the collector of :mod:`metarec.ops.control_metrics` to its health server: a
process started on a registry with a production version and a ledger answers ``GET /metrics``
with them, beside its probes.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from metarec import metrics_contract as contract
from metarec.config import load_settings
from metarec.registry import Registry, VersionRef
from metarec.testing.registry import register_fixture
from prometheus_client.parser import text_string_to_metric_families

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_ready(base: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert process.poll() is None, process.stdout.read().decode()
        assert time.monotonic() < deadline, "the controller never became ready"
        time.sleep(0.2)


def test_the_controller_process_serves_registry_series_on_its_health_port(tmp_path: Path):
    home = tmp_path / "home"
    with Registry.open(load_settings(home=home, registry={"export_bentoml": False})) as registry:
        register_fixture(registry, tmp_path / "a1", seed=1)
        registry.promote(VersionRef(model="metarec", version=1), actor="t", reason="r")
    port = free_port()
    env = {
        **os.environ,
        "METAREC_HOME": str(home),
        "METAREC_REGISTRY__EXPORT_BENTOML": "false",
        "METAREC_ROLLOUT__ROUTER__KIND": "local",
        "METAREC_ROLLOUT__ROUTER__LISTEN_PORT": str(free_port()),
    }
    metarec = Path(sys.executable).parent / "metarec"
    process = subprocess.Popen(
        [str(metarec), "rollout", "controller", "--health-port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, process)
        answer = httpx.get(f"{base}/metrics", timeout=5)
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert answer.status_code == 200
    found = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(answer.text)
        for s in family.samples
    }
    assert found[(contract.PRODUCTION_VERSION, (("model", "metarec"),))] == 1
    promotions = (contract.REGISTRY_EVENTS, (("action", "promote"), ("model", "metarec")))
    assert found[promotions] == 1
    assert found[(contract.REGISTRY_READ_ERROR, ())] == 0
