"""Traffic routers: the interface and its implementations.

* :class:`LocalWeightedRouter`: an HTTP reverse proxy in front of two local services (the
  embedded default). Sticky per user, weights swapped atomically, and the caller's view of
  each backend (requests by status class, latency) as Prometheus metrics
  (:class:`RouterMetrics`), as a service mesh gives Flagger.
* :class:`HTTPRouterClient`: drives a :class:`LocalWeightedRouter` that runs in another process
  (``metarec rollout router``) through its admin endpoint.
* :class:`GatewayAPIRouter`: Kubernetes Gateway API, the ``backendRefs`` weights of an
  ``HTTPRoute``, patched through the official Kubernetes Python client.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import random
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol, runtime_checkable

import httpx
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric

from metarec.errors import RouterError

ADMIN_PATH = "/-/rollout/weights"
METRICS_PATH = "/-/rollout/metrics"
ROUTER_REQUESTS = "metarec_router_requests_total"
ROUTER_LATENCY = "metarec_router_request_duration_seconds"
# Endpoints that get their own label value; every other path is counted as "other".
ROUTED_ENDPOINTS = ("recommend", "predict", "feedback")
ROUTER_LATENCY_BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.15,
    0.2,
    0.25,
    0.3,
    0.4,
    0.5,
    0.75,
    1.0,
    1.5,
    2.0,
    2.5,
    5.0,
    10.0,
    30.0,
)
BACKEND_HEADER = "x-metarec-backend"
HTTPROUTE_GROUP = "gateway.networking.k8s.io"
HTTPROUTE_VERSION = "v1"
HTTPROUTE_PLURAL = "httproutes"
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


@dataclass(frozen=True)
class Weights:
    """A traffic split in percent; production + canary is always 100."""

    production: int
    canary: int

    def __post_init__(self) -> None:
        """Refuse splits that are not two non-negative integers summing to 100."""
        for value in (self.production, self.canary):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise RouterError(
                    f"Weights must be non-negative integers, got production={self.production!r}, "
                    f"canary={self.canary!r}.",
                    fix="pass whole percentages, e.g. production=90, canary=10.",
                )
        if self.production + self.canary != 100:
            raise RouterError(
                f"Weights must sum to 100, got production={self.production} + "
                f"canary={self.canary} = {self.production + self.canary}.",
                fix="pass complementary percentages, e.g. production=75, canary=25.",
            )


@runtime_checkable
class Router(Protocol):
    """Moves traffic between the production and the canary service."""

    def set_weights(self, *, production: int, canary: int) -> None:
        """Route ``production`` % and ``canary`` % of the traffic (they sum to 100).

        Idempotent: setting the current weights again changes nothing.
        """
        ...

    def weights(self) -> Weights:
        """The split in force."""
        ...


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


def endpoint_label(path: str) -> str:
    """The ``endpoint`` label of a proxied path: ``/predict?x=1`` → ``predict``, else ``other``.

    Bounded on purpose: a label per arbitrary path would grow without limit.
    """
    name = path.split("?", 1)[0].strip("/").split("/")[-1]
    return name if name in ROUTED_ENDPOINTS else "other"


class RouterMetrics:
    """What the router saw of each backend, as the caller: a Prometheus collector.

    Per ``backend`` (``production``/``canary``) and ``endpoint``: forwarded requests by status
    class (``metarec_router_requests_total{backend,endpoint,status="2xx|4xx|5xx"}``) and their
    latency as the router measured it (``metarec_router_request_duration_seconds`` histogram).
    A request the backend never answered (connection refused or reset, timeout) counts as
    ``5xx``: a crashed or hung canary cannot count its own errors.

    The values are plain numbers under a lock, registered on a ``CollectorRegistry`` owned by
    this instance (no process-global state, and unaffected by prometheus_client's
    multiprocess mode, which BentoML switches on in processes that import it).
    """

    def __init__(self, *, buckets: tuple[float, ...] = ROUTER_LATENCY_BUCKETS) -> None:
        """Start every count at zero.

        Args:
            buckets: Upper bounds (seconds) of the latency histogram, increasing.
        """
        self._bounds = tuple(sorted(buckets))
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, str, str], int] = {}
        self._latency: dict[tuple[str, str], tuple[list[int], float]] = {}
        self.registry = CollectorRegistry()
        self.registry.register(self)

    def observe(self, *, backend: str, endpoint: str, status: int, seconds: float) -> None:
        """Count one forwarded request.

        Args:
            backend: ``production`` or ``canary``.
            endpoint: The bounded endpoint label (:func:`endpoint_label`).
            status: The HTTP status the backend answered (a 5xx when it did not answer).
            seconds: Time from forwarding the request to having the whole answer.
        """
        key = (backend, endpoint, f"{status // 100}xx")
        with self._lock:
            self._requests[key] = self._requests.get(key, 0) + 1
            # One count per bucket (not cumulative), the last one for "above every bound".
            counts, total = self._latency.get(
                (backend, endpoint), ([0] * (len(self._bounds) + 1), 0.0)
            )
            index = next(
                (i for i, bound in enumerate(self._bounds) if seconds <= bound), len(self._bounds)
            )
            counts[index] += 1
            self._latency[(backend, endpoint)] = (counts, total + seconds)

    def describe(self) -> list[Metric]:
        """Nothing to describe up front (the registry then does not call :meth:`collect`)."""
        return []

    def collect(self) -> Iterator[Metric]:
        """The two families, as prometheus_client's exposition expects."""
        requests = CounterMetricFamily(
            ROUTER_REQUESTS.removesuffix("_total"),
            "Requests the router forwarded, by backend, endpoint and status class (5xx also "
            "when the backend did not answer).",
            labels=["backend", "endpoint", "status"],
        )
        latency = HistogramMetricFamily(
            ROUTER_LATENCY,
            "Latency of forwarded requests as the router measured it (the caller's view).",
            labels=["backend", "endpoint"],
        )
        with self._lock:
            request_items = sorted(self._requests.items())
            latency_items = sorted((k, (list(c), t)) for k, (c, t) in self._latency.items())
        for labels, count in request_items:
            requests.add_metric(list(labels), count)
        for labels, (counts, total) in latency_items:
            cumulative, buckets = 0, []
            for bound, count in zip((*self._bounds, math.inf), counts, strict=True):
                cumulative += count
                buckets.append(("+Inf" if math.isinf(bound) else repr(float(bound)), cumulative))
            latency.add_metric(list(labels), buckets, total)
        yield requests
        yield latency

    def exposition(self) -> bytes:
        """The Prometheus text exposition of these metrics."""
        return generate_latest(self.registry)


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
      (see :class:`HTTPRouterClient`). Every answer carries ``x-metarec-backend``.
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
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ Router
    def set_weights(self, *, production: int, canary: int) -> None:
        """Swap the split atomically (validated: non-negative, sum 100)."""
        weights = Weights(production=production, canary=canary)
        with self._lock:
            self._weights = weights

    def weights(self) -> Weights:
        """The split in force."""
        return self._weights

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
    def url(self) -> str:
        """The proxy's base URL (after :meth:`start`)."""
        if self._server is None:
            raise RouterError("The local router is not started.", fix="call start() first.")
        return f"http://{self._host}:{self._server.server_address[1]}"

    def start(self) -> LocalWeightedRouter:
        """Listen in a background thread; returns self."""
        router = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                # Headers and body go out in separate writes: without TCP_NODELAY, Nagle's
                # algorithm and delayed ACKs add ~40 ms to every keep-alive answer.
                self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def log_message(self, format: str, *args: Any) -> None:
                return

            def _body(self) -> bytes:
                length = int(self.headers.get("content-length") or 0)
                return self.rfile.read(length) if length else b""

            def _answer(
                self, status: int, body: bytes, headers: dict[str, str], backend: str
            ) -> None:
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header(BACKEND_HEADER, backend)
                self.send_header("content-length", str(len(body)))
                if router._closing:  # shutting down: finish this request, then close
                    self.send_header("connection", "close")
                    self.close_connection = True
                self.end_headers()
                self.wfile.write(body)

            def _admin(self, body: bytes) -> None:
                if self.command == "PUT":
                    try:
                        payload = json.loads(body)
                        router.set_weights(
                            production=payload["production"], canary=payload["canary"]
                        )
                    except (ValueError, KeyError, TypeError, RouterError) as exc:
                        message = json.dumps({"error": str(exc)}).encode()
                        self._answer(400, message, {"content-type": "application/json"}, "router")
                        return
                current = router.weights()
                message = json.dumps(
                    {"production": current.production, "canary": current.canary}
                ).encode()
                self._answer(200, message, {"content-type": "application/json"}, "router")

            def _proxy(self) -> None:
                with router._drained:
                    router._inflight += 1
                try:
                    self._forward()
                finally:
                    with router._drained:
                        router._inflight -= 1
                        router._drained.notify_all()

            def _forward(self) -> None:
                body = self._body()
                if self.path == ADMIN_PATH:
                    self._admin(body)
                    return
                if self.path == METRICS_PATH and self.command == "GET":
                    exposition = router.metrics.exposition()
                    self._answer(200, exposition, {"content-type": CONTENT_TYPE_LATEST}, "router")
                    return
                backend = router.choose(body)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                endpoint = endpoint_label(self.path)
                started = time.perf_counter()
                try:
                    upstream = router._clients[backend].request(
                        self.command,
                        router._upstreams[backend] + self.path,
                        content=body,
                        headers=headers,
                    )
                except httpx.HTTPError as exc:
                    router.metrics.observe(
                        backend=backend,
                        endpoint=endpoint,
                        status=502,
                        seconds=time.perf_counter() - started,
                    )
                    message = json.dumps(
                        {"error": f"{backend} service unreachable: {type(exc).__name__}"}
                    ).encode()
                    self._answer(502, message, {"content-type": "application/json"}, backend)
                    return
                router.metrics.observe(
                    backend=backend,
                    endpoint=endpoint,
                    status=upstream.status_code,
                    seconds=time.perf_counter() - started,
                )
                out = {k: v for k, v in upstream.headers.items() if k.lower() not in _HOP_BY_HOP}
                out.pop("content-encoding", None)
                self._answer(upstream.status_code, upstream.content, out, backend)

            do_GET = _proxy  # noqa: N815
            do_POST = _proxy  # noqa: N815
            do_PUT = _proxy  # noqa: N815
            do_DELETE = _proxy  # noqa: N815

        server = ThreadingHTTPServer((self._host, self._port), Handler)
        server.daemon_threads = True
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


class HTTPRouterClient:
    """A :class:`Router` for a :class:`LocalWeightedRouter` running in another process."""

    def __init__(self, *, url: str, timeout_s: float = 10.0) -> None:
        """Address the router at ``url`` (its base URL)."""
        self.url = url.rstrip("/")
        self._url = self.url + ADMIN_PATH
        self._timeout = timeout_s

    def _call(self, method: str, payload: dict[str, int] | None = None) -> Weights:
        try:
            response = httpx.request(method, self._url, json=payload, timeout=self._timeout)
        except httpx.HTTPError as exc:
            raise RouterError(
                f"The local router at {self._url} does not answer ({type(exc).__name__}).",
                fix="start it with `metarec rollout router` or correct rollout.router_url.",
            ) from exc
        if response.status_code != 200:
            raise RouterError(
                f"The local router refused {method} {self._url}: {response.text}",
                fix="pass weights that are non-negative integers summing to 100.",
            )
        data = response.json()
        return Weights(production=data["production"], canary=data["canary"])

    def set_weights(self, *, production: int, canary: int) -> None:
        """Set the remote router's split."""
        Weights(production=production, canary=canary)
        self._call("PUT", {"production": production, "canary": canary})

    def weights(self) -> Weights:
        """The remote router's split."""
        return self._call("GET")


class GatewayAPIRouter:
    """Sets the ``backendRefs`` weights of a Gateway API ``HTTPRoute``.

    Every rule that references both the production and the canary Service gets the new
    weights. The patch is a JSON merge patch of ``spec.rules`` carrying the
    ``metadata.resourceVersion`` that was read, so a concurrent edit of the route makes the API
    server answer 409 and the change is re-read and retried instead of overwriting it.
    """

    def __init__(
        self,
        *,
        api: Any,
        namespace: str,
        name: str,
        production_backend: str,
        canary_backend: str,
        retries: int = 3,
    ) -> None:
        """Address one HTTPRoute.

        Args:
            api: A ``kubernetes.client.CustomObjectsApi``.
            namespace: The route's namespace.
            name: The route's name.
            production_backend: Name of the production Service in ``backendRefs``.
            canary_backend: Name of the canary Service in ``backendRefs``.
            retries: Attempts on a 409 conflict.
        """
        self._api = api
        self._namespace = namespace
        self._name = name
        self._production = production_backend
        self._canary = canary_backend
        self._retries = retries

    @classmethod
    def in_cluster(
        cls, *, namespace: str, name: str, production_backend: str, canary_backend: str
    ) -> GatewayAPIRouter:
        """A router using the pod's service account (or the local kubeconfig outside a pod)."""
        from kubernetes import client, config

        try:
            config.load_incluster_config()
        except config.ConfigException:
            config.load_kube_config()
        return cls(
            api=client.CustomObjectsApi(),
            namespace=namespace,
            name=name,
            production_backend=production_backend,
            canary_backend=canary_backend,
        )

    def _where(self) -> str:
        return f"HTTPRoute {self._namespace}/{self._name}"

    def _get(self) -> dict[str, Any]:
        from kubernetes.client.exceptions import ApiException

        try:
            return self._api.get_namespaced_custom_object(
                HTTPROUTE_GROUP, HTTPROUTE_VERSION, self._namespace, HTTPROUTE_PLURAL, self._name
            )
        except ApiException as exc:
            raise RouterError(
                f"Cannot read {self._where()} (HTTP {exc.status}: {exc.reason}).",
                fix="check rollout.namespace / rollout.httproute and that the controller's "
                "ServiceAccount may get and patch it.",
            ) from exc

    def _rules(self, route: dict[str, Any]) -> list[tuple[int, int, int]]:
        """(rule index, production ref index, canary ref index) of every weighted rule."""
        found = []
        for i, rule in enumerate(route.get("spec", {}).get("rules", [])):
            names = [ref.get("name") for ref in rule.get("backendRefs", [])]
            if self._production in names and self._canary in names:
                found.append((i, names.index(self._production), names.index(self._canary)))
        if not found:
            raise RouterError(
                f"{self._where()} has no rule with both backendRefs {self._production!r} and "
                f"{self._canary!r}.",
                fix="enable the canary in the Helm values (serving.canary.enabled) or correct "
                "rollout.production_backend / rollout.canary_backend.",
            )
        return found

    def weights(self) -> Weights:
        """The split of the first weighted rule."""
        route = self._get()
        i, p, c = self._rules(route)[0]
        refs = route["spec"]["rules"][i]["backendRefs"]
        return Weights(production=refs[p].get("weight", 1), canary=refs[c].get("weight", 1))

    def set_weights(self, *, production: int, canary: int) -> None:
        """Patch every weighted rule to ``production``/``canary`` (sum 100)."""
        from kubernetes.client.exceptions import ApiException

        Weights(production=production, canary=canary)
        for attempt in range(self._retries):
            route = self._get()
            rules = copy.deepcopy(route["spec"]["rules"])
            for i, p, c in self._rules(route):
                rules[i]["backendRefs"][p]["weight"] = production
                rules[i]["backendRefs"][c]["weight"] = canary
            if rules == route["spec"]["rules"]:
                return  # already there: nothing to patch
            body = {
                "metadata": {"resourceVersion": route["metadata"].get("resourceVersion")},
                "spec": {"rules": rules},
            }
            try:
                self._api.patch_namespaced_custom_object(
                    HTTPROUTE_GROUP,
                    HTTPROUTE_VERSION,
                    self._namespace,
                    HTTPROUTE_PLURAL,
                    self._name,
                    body,
                )
                return
            except ApiException as exc:
                if exc.status == 409 and attempt + 1 < self._retries:
                    continue
                raise RouterError(
                    f"Cannot patch the weights of {self._where()} (HTTP {exc.status}: "
                    f"{exc.reason}).",
                    fix="check that the controller's ServiceAccount may patch the route and that "
                    "nothing else rewrites it continuously.",
                ) from exc
