"""GatewayAPIRouter against the real Kubernetes client, talking to a tiny local API server.

The server stores one HTTPRoute (as the Helm chart renders it), answers GET and records every
PATCH (path, content type, body), applying it as a JSON merge patch with resourceVersion checks.
"""

from __future__ import annotations

import copy
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from kubernetes import client
from metarec.errors import RouterError
from metarec.registry import Registry, VersionRef
from metarec.rollout import Phase, RolloutSpec, ServiceWindow, WindowMetrics
from metarec.rollout.controller import RolloutController, start_rollout
from metarec.rollout.routers import GatewayAPIRouter, Router, Weights
from metarec.rollout.store import RolloutStore
from metarec.testing.registry import register_fixture

pytestmark = pytest.mark.integration

PATH = "/apis/gateway.networking.k8s.io/v1/namespaces/ml/httproutes/metarec"


def http_route() -> dict:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "metarec", "namespace": "ml", "resourceVersion": "1"},
        "spec": {
            "parentRefs": [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "gw"}],
            "rules": [
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                    "backendRefs": [
                        {
                            "group": "",
                            "kind": "Service",
                            "name": "metarec-serving",
                            "port": 3000,
                            "weight": 100,
                        },
                        {
                            "group": "",
                            "kind": "Service",
                            "name": "metarec-canary",
                            "port": 3000,
                            "weight": 0,
                        },
                    ],
                }
            ],
        },
    }


def merge(target, patch):
    if not isinstance(patch, dict):
        return patch
    out = dict(target)
    for key, value in patch.items():
        out[key] = merge(target.get(key, {}), value) if isinstance(value, dict) else value
    return out


class FakeAPIServer:
    def __init__(self, port: int = 0) -> None:
        self.route = http_route()
        self.patches: list[dict] = []
        self.conflicts_to_inject = 0
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                return

            def _send(self, status, payload):
                body = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                if self.path != PATH:
                    return self._send(404, {"kind": "Status", "code": 404, "reason": "NotFound"})
                return self._send(200, fake.route)

            def do_PATCH(self):
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                fake.patches.append(
                    {"path": self.path, "content_type": self.headers["content-type"], "body": body}
                )
                expected = body.get("metadata", {}).get("resourceVersion")
                if fake.conflicts_to_inject:
                    fake.conflicts_to_inject -= 1
                    fake.route["metadata"]["resourceVersion"] = str(
                        int(fake.route["metadata"]["resourceVersion"]) + 1
                    )
                if expected != fake.route["metadata"]["resourceVersion"]:
                    return self._send(409, {"kind": "Status", "code": 409, "reason": "Conflict"})
                fake.route = merge(fake.route, body)
                fake.route["metadata"]["resourceVersion"] = str(int(expected) + 1)
                return self._send(200, fake.route)

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def api_server():
    server = FakeAPIServer()
    yield server
    server.close()


def gateway_router(url: str, *, timeout_s: float = 10.0) -> GatewayAPIRouter:
    api = client.CustomObjectsApi(client.ApiClient(client.Configuration(host=url)))
    return GatewayAPIRouter(
        api=api,
        namespace="ml",
        name="metarec",
        production_backend="metarec-serving",
        canary_backend="metarec-canary",
        request_timeout_s=timeout_s,
    )


@pytest.fixture
def router(api_server: FakeAPIServer) -> GatewayAPIRouter:
    return gateway_router(api_server.url)


def test_patch_sets_backend_ref_weights(router: GatewayAPIRouter, api_server: FakeAPIServer):
    assert isinstance(router, Router)
    assert router.weights() == Weights(production=100, canary=0)
    router.set_weights(production=75, canary=25)

    [patch] = api_server.patches
    assert patch["path"] == PATH
    assert patch["content_type"] == "application/merge-patch+json"
    assert patch["body"]["metadata"] == {"resourceVersion": "1"}
    refs = patch["body"]["spec"]["rules"][0]["backendRefs"]
    assert [(r["name"], r["weight"]) for r in refs] == [
        ("metarec-serving", 75),
        ("metarec-canary", 25),
    ]
    # Everything else of the rule is sent back unchanged (merge patch replaces lists whole).
    expected = copy.deepcopy(http_route()["spec"]["rules"])
    expected[0]["backendRefs"][0]["weight"] = 75
    expected[0]["backendRefs"][1]["weight"] = 25
    assert patch["body"]["spec"]["rules"] == expected
    assert router.weights() == Weights(production=75, canary=25)


def test_weights_always_sum_to_100(router: GatewayAPIRouter, api_server: FakeAPIServer):
    for production, canary in [(90, 10), (50, 50), (0, 100), (100, 0)]:
        router.set_weights(production=production, canary=canary)
        weights = [ref["weight"] for ref in api_server.route["spec"]["rules"][0]["backendRefs"]]
        assert sum(weights) == 100
    for production, canary in [(90, 20), (50, 49), (-10, 110), (50.5, 49.5)]:
        with pytest.raises(RouterError, match="Weights must"):
            router.set_weights(production=production, canary=canary)
    assert len(api_server.patches) == 4  # refused splits never reach the API server


def test_same_weights_send_no_patch(router: GatewayAPIRouter, api_server: FakeAPIServer):
    router.set_weights(production=100, canary=0)
    assert api_server.patches == []


def test_conflict_is_re_read_and_retried(router: GatewayAPIRouter, api_server: FakeAPIServer):
    api_server.conflicts_to_inject = 1
    router.set_weights(production=50, canary=50)
    assert [p["body"]["metadata"]["resourceVersion"] for p in api_server.patches] == ["1", "2"]
    assert router.weights() == Weights(production=50, canary=50)


def test_missing_route_or_backend_names_the_fix(api_server: FakeAPIServer):
    api = client.CustomObjectsApi(client.ApiClient(client.Configuration(host=api_server.url)))
    missing = GatewayAPIRouter(
        api=api, namespace="ml", name="nope", production_backend="a", canary_backend="b"
    )
    with pytest.raises(RouterError, match="HTTP 404"):
        missing.weights()
    wrong = GatewayAPIRouter(
        api=api,
        namespace="ml",
        name="metarec",
        production_backend="metarec-serving",
        canary_backend="other",
    )
    with pytest.raises(RouterError, match=r"serving\.canary\.enabled"):
        wrong.set_weights(production=90, canary=10)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class SilentServer:
    """Accepts connections, then either closes them at once or never answers."""

    def __init__(self, *, hang: bool) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.hang = hang
        self.held: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.listener.getsockname()[1]}"

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            if self.hang:
                self.held.append(connection)
            else:
                connection.close()

    def close(self) -> None:
        self.listener.close()
        for connection in self.held:
            connection.close()


@pytest.mark.parametrize("failure", ["refused", "closed", "timeout"])
def test_an_unreachable_api_server_is_a_router_error_naming_the_fix(failure: str):
    server = None if failure == "refused" else SilentServer(hang=failure == "timeout")
    url = f"http://127.0.0.1:{free_port()}" if server is None else server.url
    router = gateway_router(url, timeout_s=0.2)
    try:
        started = time.monotonic()
        with pytest.raises(RouterError, match="did not answer") as raised:
            router.set_weights(production=90, canary=10)
        assert "egress NetworkPolicy" in raised.value.fix
        with pytest.raises(RouterError, match="Kubernetes API server"):
            router.weights()
        assert time.monotonic() - started < 10  # bounded by the request timeout
    finally:
        if server is not None:
            server.close()


def test_the_controller_survives_an_unreachable_api_server_and_carries_on(tmp_path: Path):
    """A refused connection fails one tick (the rollout keeps its phase); then it proceeds."""
    port = free_port()
    registry = Registry.connect(
        url=f"sqlite:///{tmp_path / 'r.db'}", artifact_root=str(tmp_path / "artifacts")
    )
    register_fixture(registry, tmp_path / "a1", seed=1)
    registry.promote(VersionRef(model="metarec", version=1), actor="t", reason="first")
    register_fixture(registry, tmp_path / "a2", seed=2, mae=0.77)
    store = RolloutStore(engine=registry.engine)
    state = start_rollout(
        registry=registry,
        store=store,
        ref=VersionRef(model="metarec", version=2),
        spec=RolloutSpec(steps=(10, 100)),
        actor="t",
    )
    controller = RolloutController(
        registry=registry,
        store=store,
        router=gateway_router(f"http://127.0.0.1:{port}", timeout_s=0.5),
        metrics=IdleMetrics(),
    )
    try:
        [after] = controller.reconcile_all()
        assert after.phase is Phase.INITIALIZING and "did not answer" in after.message
        server = FakeAPIServer(port=port)  # the API server is back
        try:
            [after] = controller.reconcile_all()
            assert after.phase is Phase.PROGRESSING and after.canary_weight == 10
            weights = [r["weight"] for r in server.route["spec"]["rules"][0]["backendRefs"]]
            assert weights == [90, 10]
        finally:
            server.close()
        assert store.get(state.id).phase is Phase.PROGRESSING
    finally:
        registry.close()


class IdleMetrics:
    def start_window(self, state) -> None:
        return

    def read_window(self, state, *, window_s: float) -> WindowMetrics:
        return WindowMetrics(window_s=window_s, canary=ServiceWindow(), production=ServiceWindow())
