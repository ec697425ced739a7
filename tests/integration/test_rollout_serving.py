"""Canary rollouts between real `metarec serve` processes (BentoML adaptation service).

Three small models are trained on the synthetic home and registered: v1 in production, v2 (a
healthy candidate) and v3 (trained on ratings exported on the wrong scale, −9..−5) in staging. Each
is served by a real `metarec serve` process, started once for the module. The real
LocalWeightedRouter sits in front; a bounded load loop replays real (user, item, rating) rows
as /predict + /feedback through it. The controller reads requests, 5xx and latency from the
router's caller-side metrics and online MAE from the services' real /metrics.

* healthy v2 → promoted;
* v2 behind a test-side fault proxy answering 500 / dropping the connection for 20 % of its
  requests → rolled back on the error rate (the service itself never sees those requests);
* v2 behind the proxy with 0.5 s added latency → rolled back on p99;
* v3 (bad predictions from a real model) → rolled back on the online-MAE delta;
* a real `metarec rollout controller` process SIGKILLed mid-rollout (healthy, and 20 % 5xx) and
  restarted → resumes from the persisted state and reaches the same outcome.

Each test works on its own copy of the registry database (the services loaded their models at
start-up), so the tests do not depend on their order.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from metarec.config import Settings, load_settings
from metarec.features.training_set import load_training_set
from metarec.registry import Action, Registry, Stage, VersionRef
from metarec.registry.service import artifact_root
from metarec.rollout import Phase, RolloutSpec
from metarec.rollout.controller import RolloutController, start_rollout
from metarec.rollout.metrics import ScrapeMetricSource
from metarec.rollout.routers import LocalWeightedRouter, Weights
from metarec.rollout.store import RolloutStore
from metarec.serving.process import free_port
from metarec.testing.serving import mark_validated, train_and_register

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


HERE = Path(__file__).resolve().parent
backend = _load(HERE / "rollout_backend.py", "metarec_rollout_test_backend")
faults = _load(HERE / "rollout_faults.py", "metarec_rollout_faults")
controllers = _load(HERE / "controller_process.py", "metarec_controller_process")
# The services' feedback token: the load loop (the team's backend here) sends it; the services
# refuse feedback without it and remember only its predictions for scoring.
FEEDBACK_TOKEN = "rollout-serving-feedback-token-0123456789"


@dataclass
class TrustedLoadLoop(backend.LoadLoop):
    """The test backend's load loop, sending the feedback token with every request."""

    def _call(self, client: httpx.Client, kind: str, payload: dict) -> None:
        client.headers["authorization"] = f"Bearer {FEEDBACK_TOKEN}"
        super()._call(client, kind, payload)


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
            METAREC_SERVING__FEEDBACK_TOKEN=FEEDBACK_TOKEN,
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
    # A sample keeps the probing short: 100 users (sticky routing sends a share of them, not
    # of requests, to the canary: too few users make the MAE comparison a comparison of
    # users), 50 items.
    users = sorted({u for u, _, _ in rows})[:100]
    items = sorted({i for _, i, _ in rows if i})[:50]
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
def versions(synthetic_home: Settings, tmp_path_factory: pytest.TempPathFactory):
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
    # Genuinely bad predictions from a real training run: ratings on −9..−5 (−10), so answers
    # sit at the bottom of the scale while true ratings are mostly 3..5. Inverted (6 − r) or
    # shuffled labels are not worse online here: per-user adaptation on the real support
    # ratings makes every small model about as good as the user's mean (MAE delta ≈ 0.03);
    # +10 (answers at the top of the scale) was worse by only +0.25..0.51.
    bad_set = mark_validated(
        training_set, root / "bad" / "ts.parquet", ratings=lambda ratings: ratings - 10.0
    )
    # The factor fold-in fits each user's own bias from the real support ratings, which soaks
    # up most of the shift; the corrupted version serves the MeLU rating model, as before.
    v3 = train_and_register(
        settings, bad_set, workdir=root / "w3", config={"factor_model": False}, promote=False
    )
    df, _ = load_training_set(training_set)
    rows = [
        (int(u), int(i), float(r))
        for u, i, r in df[["user_id", "item_id", "rating"]].itertuples(index=False)
    ]
    return settings, root, v1, v2, v3, rows


@dataclass
class Services:
    settings: Settings
    production: Served
    healthy: Served  # serves v2
    bad: Served  # serves v3
    v1: object
    v2: object
    v3: object
    rows: list


@pytest.fixture(scope="module")
def services(versions):
    """The three real services, started once for the module (in parallel)."""
    settings, root, v1, v2, v3, rows = versions
    started = [
        Served(settings.paths.home, version.tag, root / f"{name}.log")
        for name, version in (("production", v1), ("healthy", v2), ("bad", v3))
    ]
    try:
        for service in started:
            service.wait_ready()
        production, healthy, bad = started
        for service, version in zip(started, (v1, v2, v3), strict=True):
            assert httpx.get(f"{service.url}/metadata").json()["version"] == version.version
        rows = servable(rows, production.url, healthy.url, bad.url)
        assert len(rows) > 50
        yield Services(settings, production, healthy, bad, v1, v2, v3, rows)
    finally:
        for service in started:
            service.stop()


@pytest.fixture
def registry(services: Services, tmp_path: Path):
    """This test's own copy of the registry (v1 production, v2 and v3 staging)."""
    source = services.settings.paths.registry_db
    for suffix in ("", "-wal", "-shm"):
        if Path(f"{source}{suffix}").exists():
            shutil.copy(f"{source}{suffix}", tmp_path / f"registry.db{suffix}")
    registry = Registry.connect(
        url=f"sqlite:///{tmp_path / 'registry.db'}", artifact_root=artifact_root(services.settings)
    )
    yield registry
    registry.close()


SPEC = RolloutSpec(
    steps=(20, 50, 100),
    interval_s=2.0,
    max_error_rate=0.01,
    max_p99_ms=2000,
    max_online_mae_delta=1.0,
    failure_threshold=2,
    min_requests=20,
    min_feedback=10,
)


@dataclass
class Rollout:
    final: object
    weights: Weights
    outcomes: list
    sent: int
    store: RolloutStore


def roll_out(
    services: Services,
    registry: Registry,
    *,
    canary_url: str,
    version,
    spec: RolloutSpec = SPEC,
    threads: int = 2,
) -> Rollout:
    """Route real traffic through the real router while the controller rolls ``version`` out."""
    router = LocalWeightedRouter(
        production_url=services.production.url, canary_url=canary_url, seed=0
    ).start()
    store = RolloutStore(engine=registry.engine)
    controller = RolloutController(
        registry=registry,
        store=store,
        router=router,
        metrics=ScrapeMetricSource(
            production_url=services.production.url,
            canary_url=canary_url,
            router_url=router.admin_url,  # the router's caller-side metrics: its admin API
            router_token=router.admin_token,
        ),
    )
    load = TrustedLoadLoop(
        url=router.url, rows=services.rows, threads=threads, max_requests=20_000, deadline_s=90
    ).start()
    try:
        state = start_rollout(
            registry=registry,
            store=store,
            ref=VersionRef(model=version.model, version=version.version),
            spec=spec,
            actor="test",
        )
        final = controller.run_until_done(state.id, poll_s=0.25, timeout_s=75)
        weights = router.weights()
    finally:
        outcomes = load.stop()
        router.stop()
    for window in final.verdict.windows if final.verdict else []:
        print(  # the measured numbers, visible with -s
            f"{window.result} at {window.canary_weight}%: "
            + ", ".join(
                f"{c.name}={'n/a' if c.value is None else format(c.value, '.4g')}"
                for c in window.checks
            )
            + f", canary requests={window.metrics['canary']['requests']:.0f}"
            + f", canary feedback={window.metrics['canary']['feedback']:.0f}"
            + f", canary MAE={window.metrics['canary']['online_mae']}"
            + f", production MAE={window.metrics['production']['online_mae']}"
        )
    return Rollout(final, weights, outcomes, load._sent, store)


def assert_no_production_failure_and_nothing_lost(rollout: Rollout) -> None:
    outcomes = rollout.outcomes
    assert outcomes, "the load loop sent nothing"
    lost = [o for o in outcomes if o.status is None]
    assert lost == [], f"{len(lost)} requests lost: {lost[:3]}"
    assert len(outcomes) == 2 * rollout.sent  # every request sent got an answer
    production = [o for o in outcomes if o.backend == "production"]
    assert production and [o for o in production if o.status != 200] == []
    assert {o.backend for o in outcomes} <= {"production", "canary"}


def assert_rolled_back(services, registry, rollout: Rollout, version, failing_check: str):
    final = rollout.final
    assert final.phase is Phase.FAILED, final.message
    assert rollout.weights == Weights(production=100, canary=0)
    assert registry.production(version.model).version == services.v1.version
    ref = VersionRef(model=version.model, version=version.version)
    assert registry.get_version(ref).stage is Stage.STAGING
    assert final.verdict.status == "failed" and failing_check in final.verdict.reason
    events = rollout.store.events(final.id)
    analysed = [e for e in events if e.checks is not None]
    # Within the failure threshold: exactly `failure_threshold` failed windows, then 0 %.
    assert [e.action for e in analysed if e.action in ("retry", "checks_failed")] == [
        "retry",
        "checks_failed",
    ]
    for event in analysed[-2:]:
        assert not {c["name"]: c for c in event.checks}[failing_check]["passed"]
    assert events[-1].action == "failed" and events[-1].canary_weight == 0
    assert not [
        e
        for e in registry.history(version.model)
        if e.version == version.version and e.action is Action.PROMOTE
    ]
    assert_no_production_failure_and_nothing_lost(rollout)
    return {c.name: c.model_dump() for c in final.verdict.final_checks}


def test_healthy_real_canary_is_promoted(services: Services, registry: Registry):
    v1, v2 = services.v1, services.v2
    rollout = roll_out(services, registry, canary_url=services.healthy.url, version=v2)
    final = rollout.final
    assert final.phase is Phase.SUCCEEDED, final.message
    assert rollout.weights == Weights(production=0, canary=100)
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
        assert checks["latency_p99_ms"]["value"] > 0  # the router's real histogram
        assert checks["online_mae_delta"]["value"] is not None  # from real feedback scoring
        assert window["metrics"]["canary"]["feedback"] >= SPEC.min_feedback
    assert_no_production_failure_and_nothing_lost(rollout)
    assert not [o for o in rollout.outcomes if o.status != 200]


def test_real_canary_answering_5xx_to_20_percent_is_rolled_back(
    services: Services, registry: Registry
):
    # 10 % answered 500 and 10 % dropped without an answer, between the router and the canary.
    with faults.FaultProxy(
        upstream=services.healthy.url, error_rate=0.1, drop_rate=0.1, seed=3
    ) as proxy:
        rollout = roll_out(services, registry, canary_url=proxy.url, version=services.v2)
    checks = assert_rolled_back(services, registry, rollout, services.v2, "error_rate")
    assert 0.1 < checks["error_rate"]["value"] < 0.32
    assert proxy.counts["errors"] > 0 and proxy.counts["drops"] > 0
    canary = [o for o in rollout.outcomes if o.backend == "canary"]
    assert {o.status for o in canary} == {200, 500, 502}  # 502: the router's answer to a drop


def test_slow_real_canary_is_rolled_back(services: Services, registry: Registry):
    spec = SPEC.model_copy(update={"max_p99_ms": 300.0, "min_requests": 10, "min_feedback": 5})
    with faults.FaultProxy(upstream=services.healthy.url, delay_s=0.5) as proxy:
        rollout = roll_out(
            services, registry, canary_url=proxy.url, version=services.v2, spec=spec, threads=4
        )
    checks = assert_rolled_back(services, registry, rollout, services.v2, "latency_p99_ms")
    assert checks["latency_p99_ms"]["value"] > 450  # the caller saw the added 0.5 s
    assert checks["error_rate"]["value"] == 0.0


def test_real_canary_with_bad_predictions_is_rolled_back(services: Services, registry: Registry):
    # Sticky routing compares different users: at 20 % the healthy v2 measured +0.10..0.15
    # against production, so the limit leaves room for that noise; 60 events per window.
    spec = SPEC.model_copy(update={"max_online_mae_delta": 0.5, "min_feedback": 60})
    rollout = roll_out(
        services, registry, canary_url=services.bad.url, version=services.v3, spec=spec
    )
    checks = assert_rolled_back(services, registry, rollout, services.v3, "online_mae_delta")
    assert checks["online_mae_delta"]["value"] > 0.5
    assert checks["error_rate"]["value"] == 0.0  # a healthy service: only its answers are bad


def _controller_process(services: Services, registry_db: Path, router, canary_url: str, log):
    """`metarec rollout controller` on this test's registry copy, driving ``router`` (http)."""
    return controllers.start_controller(
        {
            "METAREC_HOME": str(services.settings.paths.home),
            "METAREC_REGISTRY__DATABASE_URL": f"sqlite:///{registry_db}",
            "METAREC_REGISTRY__ARTIFACT_ROOT": artifact_root(services.settings),
            "METAREC_ROLLOUT__ROUTER__KIND": "http",
            "METAREC_ROLLOUT__ROUTER__URL": router.admin_url,  # the controller drives its admin API
            "METAREC_ROLLOUT__ROUTER__ADMIN_TOKEN": router.admin_token,
            "METAREC_ROLLOUT__PRODUCTION_URL": services.production.url,
            "METAREC_ROLLOUT__CANARY_URL": canary_url,
            "METAREC_ROLLOUT__POLL_S": "0.2",
        },
        log,
    )


def _wait_for(store: RolloutStore, rollout_id: str, predicate, timeout_s: float, log: Path):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        state = store.get(rollout_id)
        if predicate(state):
            return state
        time.sleep(0.1)
    pytest.fail(f"timed out; controller log:\n{log.read_text()[-3000:]}")


@pytest.mark.parametrize(
    ("error_rate", "killed_when", "outcome"),
    [
        (0.0, lambda s: s.phase is Phase.PROGRESSING and s.step_index >= 1, Phase.SUCCEEDED),
        (0.2, lambda s: s.failed_checks == 1, Phase.FAILED),
    ],
    ids=["healthy-promoted", "5xx-rolled-back"],
)
def test_controller_killed_mid_rollout_resumes_with_real_services(
    services: Services, registry: Registry, tmp_path: Path, error_rate, killed_when, outcome
):
    store = RolloutStore(engine=registry.engine)
    log = tmp_path / "controller.log"
    with faults.FaultProxy(upstream=services.healthy.url, error_rate=error_rate, seed=5) as proxy:
        router = LocalWeightedRouter(
            production_url=services.production.url, canary_url=proxy.url, seed=0
        ).start()
        load = TrustedLoadLoop(
            url=router.url, rows=services.rows, threads=2, max_requests=20_000, deadline_s=120
        ).start()
        first = second = None
        try:
            state = start_rollout(
                registry=registry,
                store=store,
                ref=VersionRef(model=services.v2.model, version=services.v2.version),
                spec=SPEC,
                actor="test",
            )
            first = _controller_process(services, tmp_path / "registry.db", router, proxy.url, log)
            at_kill = _wait_for(store, state.id, killed_when, 60, log)
            controllers.stop_controller(first, signal.SIGKILL)  # no cleanup, no last write
            at_kill = store.get(state.id)
            assert not at_kill.phase.terminal
            # Nobody moves the weights while the controller is dead; traffic keeps flowing.
            assert router.weights() == Weights(
                production=100 - at_kill.canary_weight, canary=at_kill.canary_weight
            )
            second = _controller_process(services, tmp_path / "registry.db", router, proxy.url, log)
            final = _wait_for(store, state.id, lambda s: s.phase.terminal, 90, log)
            assert controllers.stop_controller(second) == 0  # SIGTERM: a clean exit
            weights = router.weights()
        finally:
            outcomes = load.stop()
            for process in (first, second):
                if process is not None:
                    controllers.stop_controller(process, signal.SIGKILL)
            router.stop()

    assert final.phase is outcome, final.message
    events = store.events(final.id)
    resumed = [e for e in events if e.action == "resume"]
    assert len(resumed) == 1 and resumed[0].canary_weight == at_kill.canary_weight
    advances = [e.canary_weight for e in events if e.action in ("start", "advance")]
    assert advances == sorted(set(advances))  # no step repeated or skipped back
    if outcome is Phase.SUCCEEDED:
        assert advances == list(SPEC.steps)
        assert weights == Weights(production=0, canary=100)
        assert registry.production(services.v2.model).version == services.v2.version
    else:
        # The failure count survived the kill: one more failed window after the restart.
        assert [e.action for e in events if e.action in ("retry", "checks_failed")] == [
            "retry",
            "checks_failed",
        ]
        assert weights == Weights(production=100, canary=0)
        assert registry.production(services.v1.model).version == services.v1.version
        ref = VersionRef(model=services.v2.model, version=services.v2.version)
        assert registry.get_version(ref).stage is Stage.STAGING
    rollout = Rollout(final, weights, outcomes, load._sent, store)
    assert_no_production_failure_and_nothing_lost(rollout)
