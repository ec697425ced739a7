"""A canary rollout between two real `metarec serve` processes (BentoML adaptation service).

Two small models are trained on the synthetic home and registered (v1 in production, v2 in
staging); each is served by a real `metarec serve` process. The real LocalWeightedRouter sits
in front, a bounded load loop replays real (user, item, rating) rows as /predict + /feedback,
and the controller scrapes the services' real /metrics (requests, latency histogram, feedback
and absolute-error sums) until it promotes v2 in the registry.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from metarec.config import Settings, load_settings
from metarec.features.training_set import load_training_set
from metarec.registry import Action, Registry, Stage, VersionRef
from metarec.rollout import Phase, RolloutSpec
from metarec.rollout.controller import RolloutController, start_rollout
from metarec.rollout.metrics import ScrapeMetricSource
from metarec.rollout.router import LocalWeightedRouter, Weights
from metarec.rollout.store import RolloutStore
from metarec.serving.process import free_port
from metarec.serving.testing import mark_validated, train_and_register

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _load_backend():
    path = Path(__file__).resolve().parents[1] / "unit" / "rollout" / "backend.py"
    spec = importlib.util.spec_from_file_location("metarec_rollout_test_backend", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


backend = _load_backend()


class Served:
    """`metarec serve --version V --port P` as a child process group."""

    def __init__(self, home: Path, version: str, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ)
        env.update(
            METAREC_HOME=str(home),
            METAREC_REGISTRY__EXPORT_BENTOML="false",
            METAREC_SERVING__TORCH_THREADS="1",
        )
        self.log = log
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from metarec.cli.main import main; main()",
                "serve",
                "--version",
                version,
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
            ],
            env=env,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"metarec serve exited: {self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        pytest.fail(f"metarec serve not ready: {self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=20)


def servable(rows, *urls):
    """Rows whose user and item both services know (unknown ids are a 404 by contract)."""
    # A sample keeps the probing short: 40 users, 60 items.
    users = sorted({u for u, _, _ in rows})[:40]
    items = sorted({i for _, i, _ in rows if i})[:60]
    with httpx.Client(timeout=30) as client:

        def known(field: str, ids, fixed: dict) -> set[int]:
            ok = set()
            for value in ids:
                body = {**fixed, field: value if field == "user_id" else [value]}
                if all(client.post(f"{url}/predict", json=body).status_code == 200 for url in urls):
                    ok.add(value)
            return ok

        good_items = known("item_ids", items, {"user_id": rows[0][0]})
        probe_item = next(iter(good_items))
        good_users = known("user_id", users, {"item_ids": [probe_item]})
    return [r for r in rows if r[0] in good_users and r[1] in good_items]


@pytest.fixture(scope="module")
def two_versions(synthetic_home: Settings, tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("rollout-serving")
    shutil.copytree(synthetic_home.paths.home, root / "home")
    settings = load_settings(home=root / "home", registry={"export_bentoml": False})
    training_set = mark_validated(
        settings.paths.training_sets / "synthetic.parquet", root / "validated" / "ts.parquet"
    )
    v1 = train_and_register(settings, training_set, workdir=root / "w1")
    v2 = train_and_register(
        settings, training_set, workdir=root / "w2", config={"max_steps": 30}, promote=False
    )
    df, _ = load_training_set(training_set)
    rows = [
        (int(u), int(i), float(r))
        for u, i, r in df[["user_id", "item_id", "rating"]].itertuples(index=False)
    ]
    return settings, root, v1, v2, rows


def test_healthy_real_canary_is_promoted(two_versions, monkeypatch: pytest.MonkeyPatch):
    settings, root, v1, v2, rows = two_versions
    monkeypatch.setenv("METAREC_HOME", str(settings.paths.home))
    production = Served(settings.paths.home, v1.tag, root / "production.log")
    canary = Served(settings.paths.home, v2.tag, root / "canary.log")
    router = load = None
    registry = Registry.open(settings)
    try:
        production.wait_ready()
        canary.wait_ready()
        assert httpx.get(f"{canary.url}/metadata").json()["version"] == v2.version
        rows = servable(rows, production.url, canary.url)
        assert len(rows) > 50
        router = LocalWeightedRouter(production_url=production.url, canary_url=canary.url).start()
        store = RolloutStore(engine=registry.engine)
        controller = RolloutController(
            registry=registry,
            store=store,
            router=router,
            metrics=ScrapeMetricSource(production_url=production.url, canary_url=canary.url),
        )
        load = backend.LoadLoop(
            url=router.url, rows=rows, threads=2, max_requests=20_000, deadline_s=120
        ).start()
        spec = RolloutSpec(
            steps=(20, 50, 100),
            interval_s=2.0,
            max_error_rate=0.01,
            max_p99_ms=2000,
            max_online_mae_delta=1.0,
            failure_threshold=2,
            min_requests=20,
            min_feedback=10,
        )
        state = start_rollout(
            registry=registry,
            store=store,
            ref=VersionRef(model=v2.model, version=v2.version),
            spec=spec,
            actor="test",
        )
        final = controller.run_until_done(state.id, poll_s=0.25, timeout_s=90)
        weights = router.weights()
    finally:
        outcomes = load.stop() if load else []
        if router:
            router.stop()
        production.stop()
        canary.stop()

    assert final.phase is Phase.SUCCEEDED, final.message
    assert weights == Weights(production=0, canary=100)
    assert registry.production(v2.model).version == v2.version
    assert registry.get_version(VersionRef(model=v1.model, version=v1.version)).stage is (
        Stage.ARCHIVED
    )
    entry = registry.history(v2.model)[-1]
    assert entry.action is Action.PROMOTE
    verdict = entry.evidence["canary_verdict"]
    passed = [w for w in verdict["windows"] if w["result"] == "passed"]
    assert [w["canary_weight"] for w in passed] == [20, 50, 100]
    for window in passed:
        checks = {c["name"]: c for c in window["checks"]}
        assert checks["error_rate"]["value"] == 0.0
        assert checks["latency_p99_ms"]["value"] > 0  # from the service's real histogram
        assert checks["online_mae_delta"]["value"] is not None  # from real feedback scoring
        assert window["metrics"]["canary"]["feedback"] >= spec.min_feedback
        print(  # measured numbers, visible with -s
            f"step {window['canary_weight']}%: "
            + ", ".join(f"{name}={c['value']:.4g}" for name, c in checks.items())
            + f", canary requests={window['metrics']['canary']['requests']:.0f}"
        )
    lost = [o for o in outcomes if o.status is None]
    assert outcomes and lost == [] and len(outcomes) == 2 * load._sent
    failed = [o for o in outcomes if o.status != 200]
    assert failed == [], (len(failed), len(outcomes), {o.user for o in failed}, failed[:3])
    registry.close()
