"""GatewayAPIRouter against the real Kubernetes client, talking to a tiny local API server.

The server stores one HTTPRoute (as the Helm chart renders it), answers GET and records every
PATCH (path, content type, body), applying it as a JSON merge patch with resourceVersion checks.
"""

from __future__ import annotations

import copy
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from kubernetes import client
from metarec.errors import RouterError
from metarec.rollout.routers import GatewayAPIRouter, Router, Weights

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
    def __init__(self) -> None:
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

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
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


@pytest.fixture
def router(api_server: FakeAPIServer) -> GatewayAPIRouter:
    configuration = client.Configuration(host=api_server.url)
    api = client.CustomObjectsApi(client.ApiClient(configuration))
    return GatewayAPIRouter(
        api=api,
        namespace="ml",
        name="metarec",
        production_backend="metarec-serving",
        canary_backend="metarec-canary",
    )


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
