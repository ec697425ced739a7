"""The local weighted router: an HTTP reverse proxy in front of two local services.

The embedded default (laptop, quickstart, CI): sticky per user, weights swapped atomically,
and the caller's view of each backend (requests by status class, latency) as Prometheus
metrics (:class:`~metarec.rollout.routers.local_metrics.RouterMetrics`), as a service mesh
gives Flagger. Another process drives it through its admin endpoint
(:class:`~metarec.rollout.routers.http.HTTPRouterClient`).
"""

from __future__ import annotations

import hashlib
import json
import random
import socket
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
from prometheus_client import CONTENT_TYPE_LATEST

from metarec.errors import RouterError
from metarec.metrics_contract import ROUTER_METRICS_PATH
from metarec.rollout.routers.base import ADMIN_PATH, BACKEND_HEADER, Weights
from metarec.rollout.routers.local_metrics import RouterMetrics, endpoint_label
from metarec.router_config import LocalRouterConfig

_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "host",
    }
)
_ROUTER = "router"  # the BACKEND_HEADER value of the router's own answers


def user_bucket(user_id: object) -> int:
    """A stable bucket 0..99 for a user id (same id, same bucket, in every process)."""
    digest = hashlib.sha256(str(user_id).encode()).digest()
    return int.from_bytes(digest[:8], "big") % 100


def user_id_of(body: bytes) -> object | None:
    """The user id of a request body: ``user_id``, or the first feedback event's ``user_id``."""
    if not body:
        return None
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(payload, dict):
        return None
    if payload.get("user_id") is not None:
        return payload["user_id"]
    events = payload.get("events")
    if isinstance(events, list) and events and isinstance(events[0], dict):
        return events[0].get("user_id")
    return None


@dataclass(frozen=True)
class Answer:
    """What the proxy sends back for one request, and which side gave it."""

    status: int
    body: bytes
    backend: str
    headers: dict[str, str] = field(default_factory=dict)


def _json_answer(status: int, payload: dict[str, Any], backend: str) -> Answer:
    body = json.dumps(payload).encode()
    return Answer(status, body, backend, {"content-type": "application/json"})


class LocalWeightedRouter:
    """Weighted, sticky HTTP reverse proxy in front of a production and a canary service.

    * Requests whose JSON body carries a user id (``user_id``, or ``events[0].user_id`` for
      feedback) go to the canary when the user's stable bucket (sha256 of the id, mod 100) is
      below the canary weight: a user stays on one side, and raising the weight only moves
      users from production to the canary, never back.
    * Requests without a user id are split at random by weight.
    * :meth:`set_weights` swaps one immutable :class:`Weights` object: each request reads it
      once, so a weight change never drops or re-routes a request in flight.
    * ``GET``/``PUT /-/rollout/weights`` reads/sets the weights from another process
      (see :class:`~metarec.rollout.routers.http.HTTPRouterClient`). Every answer carries
      ``x-metarec-backend``.
    * ``GET /-/rollout/metrics``: what the router saw of each backend (:class:`RouterMetrics`,
      also in-process as :attr:`metrics`). Every other path, ``/metrics`` included, is
      proxied.
    """

    def __init__(
        self,
        *,
        production_url: str,
        canary_url: str,
        host: str = "127.0.0.1",
        port: int = 0,
        weights: Weights | None = None,
        timeout_s: float = 30.0,
        seed: int | None = None,
    ) -> None:
        """Configure the proxy (call :meth:`start` to listen).

        Args:
            production_url: Base URL of the production service.
            canary_url: Base URL of the canary service.
            host: Interface to listen on.
            port: Port to listen on (0: a free one; see :attr:`url` after start).
            weights: Initial split (default: 100 % production).
            timeout_s: Upstream timeout per request.
            seed: Seed of the random split of requests without a user id.
        """
        self._upstreams = {
            "production": production_url.rstrip("/"),
            "canary": canary_url.rstrip("/"),
        }
        self._weights = weights or Weights(production=100, canary=0)
        self._lock = threading.Lock()
        self._random = random.Random(seed)
        self._clients = {
            name: httpx.Client(timeout=timeout_s, limits=httpx.Limits(max_connections=64))
            for name in self._upstreams
        }
        self._host, self._port = host, port
        self.metrics = RouterMetrics()
        self._inflight = 0
        self._drained = threading.Condition()
        self._closing = False
        self._server: _RouterServer | None = None
        self._thread: threading.Thread | None = None

    @classmethod
    def from_config(
        cls, config: LocalRouterConfig, *, production_url: str, canary_url: str
    ) -> LocalWeightedRouter:
        """The proxy a :class:`LocalRouterConfig` describes, in front of two services (not started).

        Args:
            config: Where the proxy listens.
            production_url: Base URL of the production service (``rollout.production_url``).
            canary_url: Base URL of the canary service (``rollout.canary_url``).
        """
        return cls(
            production_url=production_url,
            canary_url=canary_url,
            host=config.listen_host,
            port=config.listen_port,
        )

    # ------------------------------------------------------------------ Router
    def set_weights(self, *, production: int, canary: int) -> None:
        """Swap the split atomically (validated: non-negative, sum 100)."""
        weights = Weights(production=production, canary=canary)
        with self._lock:
            self._weights = weights

    def weights(self) -> Weights:
        """The split in force."""
        return self._weights

    def close(self) -> None:
        """Stop the proxy (:meth:`stop` with the default drain time)."""
        self.stop()

    # ------------------------------------------------------------------ proxy
    def choose(self, body: bytes) -> str:
        """``"production"`` or ``"canary"`` for a request with this body."""
        weights = self._weights  # read once: the request keeps this split
        user = user_id_of(body)
        if user is not None:
            return "canary" if user_bucket(user) < weights.canary else "production"
        with self._lock:
            draw = self._random.random() * 100
        return "canary" if draw < weights.canary else "production"

    @property
    def closing(self) -> bool:
        """True once :meth:`stop` began: answers then close their connection."""
        return self._closing

    @contextmanager
    def in_flight(self) -> Iterator[None]:
        """Count a request as in flight while the block runs (:meth:`stop` waits for it)."""
        with self._drained:
            self._inflight += 1
        try:
            yield
        finally:
            with self._drained:
                self._inflight -= 1
                self._drained.notify_all()

    def handle(
        self, method: str, path: str, headers: Iterable[tuple[str, str]], body: bytes
    ) -> Answer:
        """Answer one request: the admin endpoint, the router's metrics, or a proxied call."""
        if path == ADMIN_PATH:
            return self._admin(method, body)
        if path == ROUTER_METRICS_PATH and method == "GET":
            exposition = self.metrics.exposition()
            return Answer(200, exposition, _ROUTER, {"content-type": CONTENT_TYPE_LATEST})
        return self._forward(method, path, headers, body)

    def _admin(self, method: str, body: bytes) -> Answer:
        if method == "PUT":
            try:
                payload = json.loads(body)
                self.set_weights(production=payload["production"], canary=payload["canary"])
            except (ValueError, KeyError, TypeError, RouterError) as exc:
                return _json_answer(400, {"error": str(exc)}, _ROUTER)
        current = self.weights()
        return _json_answer(
            200, {"production": current.production, "canary": current.canary}, _ROUTER
        )

    def _forward(
        self, method: str, path: str, headers: Iterable[tuple[str, str]], body: bytes
    ) -> Answer:
        backend = self.choose(body)
        sent = {k: v for k, v in headers if k.lower() not in _HOP_BY_HOP}
        endpoint = endpoint_label(path)
        started = time.perf_counter()
        try:
            upstream = self._clients[backend].request(
                method, self._upstreams[backend] + path, content=body, headers=sent
            )
        except httpx.HTTPError as exc:
            self.metrics.observe(
                backend=backend,
                endpoint=endpoint,
                status=502,
                seconds=time.perf_counter() - started,
            )
            error = f"{backend} service unreachable: {type(exc).__name__}"
            return _json_answer(502, {"error": error}, backend)
        self.metrics.observe(
            backend=backend,
            endpoint=endpoint,
            status=upstream.status_code,
            seconds=time.perf_counter() - started,
        )
        out = {k: v for k, v in upstream.headers.items() if k.lower() not in _HOP_BY_HOP}
        out.pop("content-encoding", None)
        return Answer(upstream.status_code, upstream.content, backend, out)

    # ------------------------------------------------------------------ lifecycle
    @property
    def url(self) -> str:
        """The proxy's base URL (after :meth:`start`)."""
        if self._server is None:
            raise RouterError("The local router is not started.", fix="call start() first.")
        return f"http://{self._host}:{self._server.server_address[1]}"

    def start(self) -> LocalWeightedRouter:
        """Listen in a background thread; returns self."""
        server = _RouterServer((self._host, self._port), self)
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, name="metarec-local-router", daemon=True
        )
        self._thread.start()
        return self

    def stop(self, *, drain_s: float = 10.0) -> None:
        """Stop listening, let requests in flight finish, then close the upstream connections.

        Args:
            drain_s: Longest wait for requests in flight.
        """
        self._closing = True
        if self._server is not None:
            self._server.shutdown()  # no new connections
            with self._drained:
                self._drained.wait_for(lambda: self._inflight == 0, timeout=drain_s)
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        for client in self._clients.values():
            client.close()

    def __enter__(self) -> LocalWeightedRouter:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()


class _RouterServer(ThreadingHTTPServer):
    """The listening socket; its handler threads ask :attr:`router` for every answer."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], router: LocalWeightedRouter) -> None:
        self.router = router
        super().__init__(address, _ProxyHandler)


class _ProxyHandler(BaseHTTPRequestHandler):
    """HTTP plumbing only: read the request, let the router answer, write the answer."""

    protocol_version = "HTTP/1.1"
    server: _RouterServer

    def setup(self) -> None:
        """Switch Nagle's algorithm off on the accepted connection."""
        super().setup()
        # Headers and body go out in separate writes: without TCP_NODELAY, Nagle's
        # algorithm and delayed ACKs add ~40 ms to every keep-alive answer.
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the per-request access log on stderr."""
        return

    def _proxy(self) -> None:
        router = self.server.router
        with router.in_flight():
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else b""
            answer = router.handle(self.command, self.path, self.headers.items(), body)
            self._write(answer, closing=router.closing)

    def _write(self, answer: Answer, *, closing: bool) -> None:
        self.send_response(answer.status)
        for key, value in answer.headers.items():
            self.send_header(key, value)
        self.send_header(BACKEND_HEADER, answer.backend)
        self.send_header("content-length", str(len(answer.body)))
        if closing:  # shutting down: finish this request, then close
            self.send_header("connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(answer.body)

    do_GET = _proxy  # noqa: N815
    do_POST = _proxy  # noqa: N815
    do_PUT = _proxy  # noqa: N815
    do_DELETE = _proxy  # noqa: N815
