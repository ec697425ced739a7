"""The local weighted router: an HTTP reverse proxy in front of two local services.

The embedded default (laptop, quickstart, CI): sticky per user, weights swapped atomically,
and the caller's view of each backend (requests by status class, latency) as Prometheus
metrics (:class:`~metarec.rollout.routers.local_metrics.RouterMetrics`), as a service mesh
gives Flagger. The proxy has two listeners: traffic (every path proxied, ``/-/…`` answered
404) and the admin API (weights and metrics, bearer token), on which another process drives it
(:class:`~metarec.rollout.routers.http.HTTPRouterClient`). The HTTP plumbing (strict
``Content-Length``, chunked bodies, timeouts) is :mod:`~metarec.rollout.routers.local_http`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import secrets
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from prometheus_client import CONTENT_TYPE_LATEST

from metarec.errors import RouterError
from metarec.metrics_contract import ROUTER_METRICS_PATH
from metarec.rollout.routers.base import ADMIN_PATH, Weights
from metarec.rollout.routers.local_http import AdminHandler, Answer, RouterServer, TrafficHandler
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
        "expect",
    }
)
_ROUTER = "router"  # the BACKEND_HEADER value of the router's own answers
ADMIN_PREFIX = "/-/"  # paths of the admin listener; the traffic listener answers them 404
DEFAULT_MAX_BODY_BYTES = 10_000_000
_POLL_S = 0.1  # how often a listener checks for stop(): each stop waits up to this long


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


def _json_answer(status: int, payload: dict[str, Any], backend: str) -> Answer:
    body = json.dumps(payload).encode()
    return Answer(status, body, backend, {"content-type": "application/json"})


def _check_admin(*, port: int, admin_port: int, admin_token: str | None) -> None:
    """Refuse one port for both listeners, or an empty admin token."""
    if port and port == admin_port:
        raise RouterError(
            f"The router's traffic and admin ports are both {port}.",
            fix="give the admin API its own port (0: a free one).",
        )
    if admin_token is not None and not admin_token.strip():
        raise RouterError(
            "The router's admin token is empty.",
            fix="set a non-empty token, or none to have one generated.",
        )


class LocalWeightedRouter:
    """Weighted, sticky HTTP reverse proxy in front of a production and a canary service.

    * Requests whose JSON body carries a user id (``user_id``, or ``events[0].user_id`` for
      feedback) go to the canary when the user's stable bucket (sha256 of the id, mod 100) is
      below the canary weight: a user stays on one side, and raising the weight only moves
      users from production to the canary, never back.
    * Requests without a user id are split at random by weight.
    * :meth:`set_weights` swaps one immutable :class:`Weights` object: each request reads it
      once, so a weight change never drops or re-routes a request in flight.
    * Two listeners. Traffic (:attr:`url`): every path is proxied except ``/-/…`` (404).
      Admin (:attr:`admin_url`, its own port): ``GET``/``PUT /-/rollout/weights`` reads/sets
      the weights from another process (see
      :class:`~metarec.rollout.routers.http.HTTPRouterClient`) and ``GET /-/rollout/metrics``
      is what the router saw of each backend (:class:`RouterMetrics`, also in-process as
      :attr:`metrics`); every admin request needs ``Authorization: Bearer`` :attr:`admin_token`.
      Every answer carries ``x-metarec-backend``.
    * On both listeners a ``Content-Length`` that is not a non-negative integer is refused
      (400), a body above ``max_body_bytes`` too (413), and chunked bodies are forwarded whole.
    """

    def __init__(
        self,
        *,
        production_url: str,
        canary_url: str,
        host: str = "127.0.0.1",
        port: int = 0,
        admin_host: str = "127.0.0.1",
        admin_port: int = 0,
        admin_token: str | None = None,
        weights: Weights | None = None,
        timeout_s: float = 30.0,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        read_timeout_s: float = 30.0,
        seed: int | None = None,
    ) -> None:
        """Configure the proxy (call :meth:`start` to listen).

        Args:
            production_url: Base URL of the production service.
            canary_url: Base URL of the canary service.
            host: Interface of the traffic listener.
            port: Port of the traffic listener (0: a free one; see :attr:`url` after start).
            admin_host: Interface of the admin listener.
            admin_port: Port of the admin listener (0: a free one; see :attr:`admin_url`).
            admin_token: Bearer token of the admin API (None: a random one, see
                :attr:`admin_token`).
            weights: Initial split (default: 100 % production).
            timeout_s: Upstream timeout per request.
            max_body_bytes: Largest request body accepted (larger: 413).
            read_timeout_s: Longest wait for a client's next bytes (a stalled request: 408).
            seed: Seed of the random split of requests without a user id.

        Raises:
            RouterError: Both listeners on one port, or an empty admin token.
        """
        _check_admin(port=port, admin_port=admin_port, admin_token=admin_token)
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
        self._addresses = {"traffic": (host, port), "admin": (admin_host, admin_port)}
        self._token = admin_token or secrets.token_urlsafe(32)
        self.max_body_bytes = max_body_bytes
        self._read_timeout_s = read_timeout_s
        self.metrics = RouterMetrics()
        self._inflight = 0
        self._drained = threading.Condition()
        self._closing = False
        self._servers: dict[str, RouterServer] = {}
        self._threads: list[threading.Thread] = []

    @classmethod
    def from_config(
        cls, config: LocalRouterConfig, *, production_url: str, canary_url: str
    ) -> LocalWeightedRouter:
        """The proxy a :class:`LocalRouterConfig` describes, in front of two services (not started).

        Args:
            config: Where the proxy listens, its admin token and body limit.
            production_url: Base URL of the production service (``rollout.production_url``).
            canary_url: Base URL of the canary service (``rollout.canary_url``).
        """
        token = config.admin_token
        return cls(
            production_url=production_url,
            canary_url=canary_url,
            host=config.listen_host,
            port=config.listen_port,
            admin_host=config.admin_host,
            admin_port=config.admin_listen_port,
            admin_token=None if token is None else token.get_secret_value(),
            max_body_bytes=config.max_body_bytes,
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

    def handle_traffic(
        self, method: str, path: str, headers: Iterable[tuple[str, str]], body: bytes
    ) -> Answer:
        """Answer one request of the traffic listener: proxied, except ``/-/…`` (404)."""
        if not path.startswith("/"):
            return _json_answer(400, {"error": "the request target must be a path."}, _ROUTER)
        if path.startswith(ADMIN_PREFIX):
            route = path.split("?", 1)[0]
            error = f"{route} is not served here: the router's admin API has its own port."
            return _json_answer(404, {"error": error}, _ROUTER)
        return self._forward(method, path, headers, body)

    # ------------------------------------------------------------------ admin
    @property
    def admin_token(self) -> str:
        """The bearer token of the admin API (the configured one, or generated at creation)."""
        return self._token

    def admin_authorized(self, authorization: str | None) -> bool:
        """True when an ``Authorization`` header value carries this router's admin token."""
        scheme, _, token = (authorization or "").strip().partition(" ")
        if scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(token.strip().encode(), self._token.encode())

    def handle_admin(self, method: str, path: str, body: bytes) -> Answer:
        """Answer one (authenticated) request of the admin listener: weights or metrics."""
        route = path.split("?", 1)[0]
        if route == ADMIN_PATH and method in ("GET", "PUT"):
            return self._admin_weights(method, body)
        if route == ROUTER_METRICS_PATH and method == "GET":
            exposition = self.metrics.exposition()
            return Answer(200, exposition, _ROUTER, {"content-type": CONTENT_TYPE_LATEST})
        if route in (ADMIN_PATH, ROUTER_METRICS_PATH):
            return _json_answer(405, {"error": f"{method} is not allowed on {route}."}, _ROUTER)
        return _json_answer(404, {"error": f"no admin endpoint {route}."}, _ROUTER)

    def _admin_weights(self, method: str, body: bytes) -> Answer:
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
        """The traffic listener's base URL (after :meth:`start`)."""
        return self._listener_url("traffic")

    @property
    def admin_url(self) -> str:
        """The admin listener's base URL (after :meth:`start`)."""
        return self._listener_url("admin")

    def _listener_url(self, which: str) -> str:
        server = self._servers.get(which)
        if server is None:
            raise RouterError("The local router is not started.", fix="call start() first.")
        return f"http://{self._addresses[which][0]}:{server.server_address[1]}"

    def start(self) -> LocalWeightedRouter:
        """Listen (traffic and admin) in background threads; returns self."""
        handlers = {"traffic": TrafficHandler, "admin": AdminHandler}
        try:
            for which, handler in handlers.items():
                self._servers[which] = RouterServer(
                    self._addresses[which],
                    handler,
                    router=self,
                    read_timeout_s=self._read_timeout_s,
                )
        except OSError as exc:
            for server in self._servers.values():
                server.server_close()
            self._servers.clear()
            raise RouterError(
                f"The local router cannot listen at {self._addresses}: {exc}.",
                fix="choose free ports (rollout.router.listen_port / admin_port; 0: free).",
            ) from exc
        for which, server in self._servers.items():
            thread = threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": _POLL_S},
                name=f"metarec-router-{which}",
                daemon=True,
            )
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self, *, drain_s: float = 10.0) -> None:
        """Stop listening, let requests in flight finish, then close the upstream connections.

        Args:
            drain_s: Longest wait for requests in flight.
        """
        self._closing = True
        servers, self._servers = self._servers, {}
        for server in servers.values():
            server.shutdown()  # no new connections
        if servers:
            with self._drained:
                self._drained.wait_for(lambda: self._inflight == 0, timeout=drain_s)
        for server in servers.values():
            server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads = []
        for client in self._clients.values():
            client.close()

    def __enter__(self) -> LocalWeightedRouter:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()
