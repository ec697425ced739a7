"""The local router's admin API on its own port with a bearer token, and strict request framing.

Against the real router on 127.0.0.1 in front of a tiny upstream that records what it received.
Every raw-socket read has a short timeout: a request that hangs a router thread fails the test
in seconds instead of hanging the suite.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from metarec.errors import RouterError
from metarec.rollout.routers import HTTPRouterClient, LocalWeightedRouter, Weights
from metarec.rollout.routers.local import user_bucket

pytestmark = pytest.mark.integration

TOKEN = "s3cret-admin-token"
MAX_BODY = 4096
WEIGHTS = "/-/rollout/weights"


class Upstream:
    """A service stand-in that records (method, path, body) and answers 200 with the length."""

    def __init__(self, name: str) -> None:
        self.received: list[tuple[str, str, bytes]] = []
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length)
                upstream.received.append((self.command, self.path, body))
                out = json.dumps({"service": name, "length": len(body)}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            do_GET = do_POST = do_PUT = _answer  # noqa: N815

            def log_message(self, *_args) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        serve = {"poll_interval": 0.05}  # a quick stop()
        threading.Thread(target=self.server.serve_forever, kwargs=serve, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def upstreams():
    both = Upstream("production"), Upstream("canary")
    yield both
    for upstream in both:
        upstream.stop()


@pytest.fixture
def router(upstreams):
    production, canary = upstreams
    proxy = LocalWeightedRouter(
        production_url=production.url,
        canary_url=canary.url,
        admin_token=TOKEN,
        max_body_bytes=MAX_BODY,
        read_timeout_s=1.0,
    ).start()
    yield proxy
    proxy.stop(drain_s=1)


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def _raw(url: str, request: bytes, *, timeout_s: float = 5.0) -> tuple[int, dict, bytes]:
    """Send raw bytes, read one answer: status, headers, body (a hang fails within timeout_s)."""
    with socket.create_connection(("127.0.0.1", _port(url)), timeout=timeout_s) as sock:
        sock.sendall(request)
        response = http.client.HTTPResponse(sock)
        response.begin()
        return response.status, dict(response.getheaders()), response.read()


def _auth(token: str = TOKEN) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def test_the_traffic_port_does_not_serve_admin_paths(router: LocalWeightedRouter, upstreams):
    assert router.admin_url != router.url
    with httpx.Client(base_url=router.url, timeout=5) as client:
        for method, path in [("GET", WEIGHTS), ("PUT", WEIGHTS), ("GET", "/-/rollout/metrics")]:
            body = {"production": 0, "canary": 100} if method == "PUT" else None
            response = client.request(method, path, json=body, headers=_auth())
            assert response.status_code == 404, (method, path)
            assert response.headers["x-metarec-backend"] == "router"
        assert client.post("/predict", json={"user_id": 1}).status_code == 200  # traffic works
    assert router.weights() == Weights(production=100, canary=0)
    assert [path for _, path, _ in upstreams[0].received] == ["/predict"]  # nothing else leaked


def test_the_admin_api_needs_the_bearer_token(router: LocalWeightedRouter):
    put = {"production": 0, "canary": 100}
    with httpx.Client(base_url=router.admin_url, timeout=5) as client:
        basic, bare = {"authorization": f"Basic {TOKEN}"}, {"authorization": "Bearer"}
        for headers in ({}, _auth("wrong"), basic, bare):
            assert client.get(WEIGHTS, headers=headers).status_code == 401
            refused = client.put(WEIGHTS, json=put, headers=headers)
            assert refused.status_code == 401 and "Bearer" in refused.headers["www-authenticate"]
            assert client.get("/-/rollout/metrics", headers=headers).status_code == 401
        assert router.weights() == Weights(production=100, canary=0)
        assert client.put(WEIGHTS, json=put, headers=_auth()).json() == put
        assert client.get(WEIGHTS, headers=_auth()).json() == put
        assert client.get("/-/rollout/metrics", headers=_auth()).status_code == 200
        assert client.post("/predict", json={"user_id": 1}, headers=_auth()).status_code == 404
        assert client.delete(WEIGHTS, headers=_auth()).status_code == 405
    assert router.weights() == Weights(production=0, canary=100)


def test_a_router_without_a_configured_token_generates_one_per_process(upstreams):
    production, canary = upstreams
    first = LocalWeightedRouter(production_url=production.url, canary_url=canary.url).start()
    second = LocalWeightedRouter(production_url=production.url, canary_url=canary.url).start()
    try:
        assert len(first.admin_token) >= 32 and first.admin_token != second.admin_token
        remote = HTTPRouterClient(url=first.admin_url, admin_token=first.admin_token)
        remote.set_weights(production=30, canary=70)
        assert first.weights() == Weights(production=30, canary=70) == remote.weights()
        with pytest.raises(RouterError, match="admin token"):
            HTTPRouterClient(url=second.admin_url, admin_token=first.admin_token).weights()
    finally:
        first.stop(drain_s=1)
        second.stop(drain_s=1)


@pytest.mark.parametrize(
    ("length", "status"),
    [
        *[
            ("-1", 400),
            ("-5", 400),
            ("abc", 400),
            ("+5", 400),
            ("1.5", 400),
            ("", 400),
            ("5, 6", 400),
        ],
        *[(str(MAX_BODY + 1), 413), ("9" * 40, 413), ("1" + "0" * 5000, 413)],
    ],
)
@pytest.mark.parametrize("listener", ["traffic", "admin"])
def test_an_invalid_content_length_is_answered_at_once(router, upstreams, listener, length, status):
    url = router.url if listener == "traffic" else router.admin_url
    request = (
        f"PUT {'/predict' if listener == 'traffic' else WEIGHTS} HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {TOKEN}\r\nContent-Length: {length}\r\n\r\n"
    ).encode()
    got, headers, body = _raw(url, request + b"{}")
    assert got == status and headers.get("connection") == "close"
    assert "error" in json.loads(body)
    assert upstreams[0].received == upstreams[1].received == []


def test_conflicting_framing_and_unknown_codings_are_refused(router: LocalWeightedRouter):
    base = "POST /predict HTTP/1.1\r\nHost: x\r\n"
    both = base + "Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    assert _raw(router.url, both.encode())[0] == 400
    twice = base + "Content-Length: 2\r\nContent-Length: 3\r\n\r\nabc"
    assert _raw(router.url, twice.encode())[0] == 400
    gzip = base + "Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"
    assert _raw(router.url, gzip.encode())[0] == 501
    bad_chunk = base + "Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n"
    assert _raw(router.url, bad_chunk.encode())[0] == 400
    huge_chunk = base + f"Transfer-Encoding: chunked\r\n\r\n{MAX_BODY + 1:x}\r\n"
    assert _raw(router.url, huge_chunk.encode())[0] == 413


def test_a_stalled_body_times_out_instead_of_holding_a_thread(router: LocalWeightedRouter):
    request = b'POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"user'
    status, headers, _ = _raw(router.url, request, timeout_s=5.0)  # router: read_timeout_s=1
    assert status == 408 and headers.get("connection") == "close"


def test_a_chunked_body_reaches_the_upstream_intact(router: LocalWeightedRouter, upstreams):
    production, canary = upstreams
    router.set_weights(production=50, canary=50)
    user = next(u for u in range(100) if user_bucket(u) < 50)  # routed to the canary
    chunks = [f'{{"user_id": {user}, '.encode(), b'"item_ids": [1, 2, 3],', b' "k": 7}']
    connection = http.client.HTTPConnection("127.0.0.1", _port(router.url), timeout=5)
    try:
        connection.request(
            "POST",
            "/predict?x=1",
            body=iter(chunks),
            headers={"Content-Type": "application/json", "Transfer-Encoding": "chunked"},
            encode_chunked=True,
        )
        response = connection.getresponse()
        answer = json.loads(response.read())
        assert response.status == 200 and response.getheader("x-metarec-backend") == "canary"
        assert answer == {"service": "canary", "length": len(b"".join(chunks))}
        # The same connection goes on: the whole chunked body was consumed, nothing left over.
        connection.request("POST", "/predict", body=b'{"user_id": 1}')
        assert connection.getresponse().read()
    finally:
        connection.close()
    assert canary.received[0] == ("POST", "/predict?x=1", b"".join(chunks))
    assert len(canary.received) + len(production.received) == 2


def test_a_chunked_weight_change_on_the_admin_port(router: LocalWeightedRouter):
    connection = http.client.HTTPConnection("127.0.0.1", _port(router.admin_url), timeout=5)
    try:
        connection.request(
            "PUT",
            WEIGHTS,
            body=iter([b'{"production": 20,', b' "canary": 80}']),
            headers={"Transfer-Encoding": "chunked", **_auth()},
            encode_chunked=True,
        )
        response = connection.getresponse()
        assert response.status == 200, response.read()
    finally:
        connection.close()
    assert router.weights() == Weights(production=20, canary=80)


def test_the_http_client_drives_the_router_with_its_token(router: LocalWeightedRouter):
    remote = HTTPRouterClient(url=router.admin_url, admin_token=TOKEN, timeout_s=5)
    remote.set_weights(production=60, canary=40)
    assert router.weights() == Weights(production=60, canary=40) == remote.weights()
    with pytest.raises(RouterError, match="refused the admin token"):
        HTTPRouterClient(url=router.admin_url, admin_token="wrong", timeout_s=5).weights()
    with pytest.raises(RouterError, match="not a router admin API"):  # the traffic URL
        HTTPRouterClient(url=router.url, admin_token=TOKEN, timeout_s=5).weights()
