"""Production follows the registry: no mixed versions after a promotion.

A real ``bentoml serve`` process is started for stage production (no pinned version) while v1 is
in production. v2 is then promoted in the registry: within a bounded time the running service
reports v2 in ``/metadata``, ``/recommend`` and its metrics, and a service started after the
promotion (as an autoscaler would add one) serves v2 too. A pinned v1 stays v1.
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Callable

import httpx
import pytest
from metarec.config import load_settings
from metarec.registry import Registry, VersionRef
from metarec.serving.process import ServiceProcess
from metarec.testing.serving import mark_validated, train_and_register

pytestmark = [pytest.mark.integration, pytest.mark.slow]

POLL_SECONDS = 1.0
# Poll, load (checksum verified), read the item features and warm up, on a busy 2-core machine.
FOLLOW_TIMEOUT_S = 90.0
ENV = {"METAREC_SERVING__TORCH_THREADS": "1"}
READY_S = 300.0  # a service start on the busy machine


def metric(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{"):
            found = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
            if all(found.get(k) == v for k, v in labels.items()):
                total += float(line.rsplit(" ", 1)[1])
    return total


def served_tags(client: httpx.Client) -> tuple[str, str]:
    """The version ``/metadata`` and ``/recommend`` report."""
    metadata = client.get("/metadata")
    recommended = client.post("/recommend", json={"user_id": 1, "k": 3})
    assert metadata.status_code == 200 and recommended.status_code == 200, recommended.text
    return metadata.json()["model_version"], recommended.json()["model_version"]


def wait_for(check: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.5)
    return check()


def test_a_promotion_reaches_running_and_new_services_alike(synthetic_home, tmp_path):
    shutil.copytree(synthetic_home.paths.home, tmp_path / "home")
    settings = load_settings(home=tmp_path / "home", registry={"export_bentoml": False})
    training_set = mark_validated(
        settings.paths.training_sets / "synthetic.parquet", tmp_path / "validated" / "ts.parquet"
    )
    v1 = train_and_register(settings, training_set, workdir=tmp_path / "v1")
    v2 = train_and_register(
        settings, training_set, workdir=tmp_path / "v2", config={"seed": 1}, promote=False
    )
    assert v1.tag != v2.tag
    follow = {**ENV, "METAREC_SERVING__REGISTRY_POLL_SECONDS": str(POLL_SECONDS)}
    stage = ServiceProcess(
        settings,
        stage="production",
        extra_env=follow,
        log_path=tmp_path / "stage.log",
        ready_timeout=READY_S,
    )
    pinned = ServiceProcess(
        settings,
        version=v1.tag,
        extra_env=follow,
        log_path=tmp_path / "pinned.log",
        ready_timeout=READY_S,
    )
    with stage, pinned, httpx.Client(base_url=stage.url, timeout=30) as client:
        assert served_tags(client) == (v1.tag, v1.tag)
        with Registry.open(settings) as registry:
            registry.promote(
                VersionRef(model=v2.model, version=v2.version), actor="test", reason="follow"
            )
        followed = wait_for(lambda: served_tags(client) == (v2.tag, v2.tag), FOLLOW_TIMEOUT_S)
        assert followed, f"still serving {served_tags(client)} after {FOLLOW_TIMEOUT_S} s"
        assert client.get("/metadata").json()["stage"] == "production"
        metrics = client.get("/metrics").text
        assert metric(metrics, "metarec_model_reloads_total", model_version=v2.tag) == 1
        assert (
            metric(metrics, "metarec_model_reloads_total", model_version=v2.tag, outcome="loaded")
            == 1
        )
        assert metric(metrics, "metarec_requests_total", model_version=v2.tag) >= 1

        with (
            ServiceProcess(
                settings,
                stage="production",
                extra_env=ENV,
                log_path=tmp_path / "later.log",
                ready_timeout=READY_S,
            ) as later,
            httpx.Client(base_url=later.url, timeout=30) as late_client,
        ):
            assert served_tags(late_client) == (v2.tag, v2.tag)  # no mixed versions

        with httpx.Client(base_url=pinned.url, timeout=30) as pinned_client:
            assert served_tags(pinned_client) == (v1.tag, v1.tag)  # a pinned version stays
            assert pinned_client.get("/metadata").json()["stage"] == "archived"
