"""Test-side fault injection between the router and a real service (like toxiproxy, or Istio's
``fault`` on a VirtualService): faults never live in the production service code.

A :class:`FaultProxy` is a small HTTP proxy in front of one real ``metarec serve`` process. For
the analysed traffic (``POST`` to ``/predict``, ``/recommend``, ``/feedback``) it answers ``500``
for a seeded share of requests, drops the connection without an answer for another share, or
adds latency; everything else (``/metrics``, ``/readyz`` …) and the rest of the traffic is
forwarded unchanged. The service never sees a faulted request, so its own ``/metrics`` count
no error: only the caller (the router) can.
"""

from __future__ import annotations

import json
import random
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

FAULTED_ENDPOINTS = ("/predict", "/recommend", "/feedback")
_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "content-length", "host", "upgrade"}
)


class FaultProxy:
    """Forwards to ``upstream``; faults a seeded share of the analysed requests."""

    def __init__(
        self,
        *,
        upstream: str,
        error_rate: float = 0.0,
        drop_rate: float = 0.0,
        delay_s: float = 0.0,
        seed: int = 0,
    ) -> None:
        """Configure the faults (call :meth:`start`).

        Args:
            upstream: Base URL of the real service.
            error_rate: Share of analysed requests answered ``500`` without reaching it.
            drop_rate: Share whose connection is closed without any answer.
            delay_s: Latency added to every analysed request that is forwarded.
            seed: Seed of the draw that picks the faulted requests.
        """
        self.upstream = upstream.rstrip("/")
        self.error_rate, self.drop_rate, self.delay_s = error_rate, drop_rate, delay_s
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self.counts = {"forwarded": 0, "errors": 0, "drops": 0}
        self._client = httpx.Client(timeout=30, limits=httpx.Limits(max_connections=64))
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def log_message(self, *_args: object) -> None:
                return

            def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _handle(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                fault = proxy._draw(self.command, self.path)
                if fault == "error":
                    message = json.dumps({"error": "injected fault (fault proxy)"}).encode()
                    self._send(500, message, {"content-type": "application/json"})
                    return
                if fault == "drop":
                    self.close_connection = True
                    self.request.shutdown(socket.SHUT_RDWR)
                    return
                if fault == "delay":
                    time.sleep(proxy.delay_s)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                upstream = proxy._client.request(
                    self.command, proxy.upstream + self.path, content=body, headers=headers
                )
                out = {k: v for k, v in upstream.headers.items() if k.lower() not in _HOP_BY_HOP}
                out.pop("content-encoding", None)
                self._send(upstream.status_code, upstream.content, out)

            do_GET = _handle  # noqa: N815
            do_POST = _handle  # noqa: N815

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def _draw(self, method: str, path: str) -> str | None:
        """``"error"``, ``"drop"``, ``"delay"`` or None (forward unchanged)."""
        if method != "POST" or path.split("?", 1)[0] not in FAULTED_ENDPOINTS:
            return None
        with self._lock:
            draw = self._random.random()
            if draw < self.error_rate:
                self.counts["errors"] += 1
                return "error"
            if draw < self.error_rate + self.drop_rate:
                self.counts["drops"] += 1
                return "drop"
            self.counts["forwarded"] += 1
        return "delay" if self.delay_s > 0 else None

    @property
    def url(self) -> str:
        """The proxy's base URL."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> FaultProxy:
        """Listen in a background thread; returns self."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and close the upstream connections."""
        self._server.shutdown()
        self._server.server_close()
        self._client.close()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()
