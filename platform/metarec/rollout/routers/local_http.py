"""The HTTP plumbing of the local weighted router: its two listeners and strict body reading.

:class:`RouterServer` listens for :class:`~metarec.rollout.routers.local.LocalWeightedRouter`
with one of two handlers: :class:`TrafficHandler` (every path proxied, ``/-/…`` refused) or
:class:`AdminHandler` (bearer token checked before the body is read). Both read a request body
with :func:`read_body`: a ``Content-Length`` that is not a non-negative integer is answered
400, one above the limit 413, a chunked body is decoded whole (within the same limit), and
every refusal is answered at once and closes the connection (the unread body cannot be taken
for the next request). A client that stalls mid-request times out after the server's
``read_timeout_s`` (408): no request holds a thread for ever.
"""

from __future__ import annotations

import json
import socket
import string
from collections.abc import Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from metarec.rollout.routers.base import BACKEND_HEADER

ADMIN_MAX_BODY_BYTES = 64 * 1024  # a weights payload is a few bytes
_MAX_LINE = 1024  # a chunk-size or trailer line
_MAX_TRAILERS = 32
_MAX_LENGTH_DIGITS = 18  # below 2**63: larger values are refused (413) without int()
_HEX = frozenset(string.hexdigits)
_ROUTER = "router"  # the BACKEND_HEADER value of the router's own answers


@dataclass(frozen=True)
class Answer:
    """What the proxy sends back for one request, and which side gave it."""

    status: int
    body: bytes
    backend: str
    headers: dict[str, str] = field(default_factory=dict)


class Reader(Protocol):
    """The request stream (a buffered socket file, or ``io.BytesIO`` in tests)."""

    def read(self, size: int, /) -> bytes:
        """Up to ``size`` bytes (fewer only at the end of the stream)."""
        ...

    def readline(self, size: int, /) -> bytes:
        """One line, at most ``size`` bytes."""
        ...


class RouterApp(Protocol):
    """What the handlers ask the router.

    Implemented by :class:`~metarec.rollout.routers.local.LocalWeightedRouter`.
    """

    max_body_bytes: int

    @property
    def closing(self) -> bool:
        """True once the router is stopping: answers then close their connection."""
        ...

    def in_flight(self) -> AbstractContextManager[None]:
        """Count a request as in flight while the block runs."""
        ...

    def handle_traffic(
        self, method: str, path: str, headers: Iterable[tuple[str, str]], body: bytes
    ) -> Answer:
        """Answer one request of the traffic listener."""
        ...

    def admin_authorized(self, authorization: str | None) -> bool:
        """True when an ``Authorization`` header value carries the admin token."""
        ...

    def handle_admin(self, method: str, path: str, body: bytes) -> Answer:
        """Answer one authenticated request of the admin listener."""
        ...


class RefusedRequestError(Exception):
    """A request the router answers with ``status`` before reading on (then closes)."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message
        super().__init__(message)


def content_length(values: list[str], *, max_bytes: int) -> int:
    """The body length the ``Content-Length`` header(s) announce, validated.

    Raises:
        RefusedRequestError: 400 when the values differ or one is not a non-negative integer
            (``-1``, ``+1``, ``1.5``, ``abc``); 413 above ``max_bytes``.
    """
    distinct = {value.strip() for value in values}
    if len(distinct) != 1:
        raise RefusedRequestError(400, "conflicting Content-Length headers: send exactly one.")
    (value,) = distinct
    if not (value.isascii() and value.isdigit()):
        raise RefusedRequestError(
            400, f"Content-Length must be a non-negative integer, got {value[:40]!r}."
        )
    if len(value.lstrip("0")) > _MAX_LENGTH_DIGITS or int(value) > max_bytes:
        raise RefusedRequestError(413, f"the request body exceeds {max_bytes} bytes.")
    return int(value)


def read_body(headers: Message, rfile: Reader, *, max_bytes: int) -> bytes:
    """The whole request body: ``Content-Length`` bytes, a decoded chunked body, or none.

    Raises:
        RefusedRequestError: Invalid or oversized framing (400, 413), both framings at once (400),
            a transfer coding other than ``chunked`` (501), or a body that ends early (400).
        TimeoutError: The client stalled longer than the socket timeout.
    """
    encodings = headers.get_all("transfer-encoding") or []
    lengths = headers.get_all("content-length") or []
    if encodings:
        if lengths:
            raise RefusedRequestError(
                400, "both Transfer-Encoding and Content-Length: send one framing only."
            )
        codings = [c.strip().lower() for value in encodings for c in value.split(",")]
        if codings != ["chunked"]:
            raise RefusedRequestError(
                501, f"transfer coding {', '.join(codings)!r} is not supported: use chunked."
            )
        return read_chunked(rfile, max_bytes=max_bytes)
    if not lengths:
        return b""
    length = content_length(lengths, max_bytes=max_bytes)
    body = rfile.read(length) if length else b""
    if len(body) != length:
        raise RefusedRequestError(400, "the request body ended before Content-Length bytes.")
    return body


def read_chunked(rfile: Reader, *, max_bytes: int) -> bytes:
    """Decode a chunked request body (extensions ignored, trailers read and dropped).

    Raises:
        RefusedRequestError: A malformed chunk (400) or more than ``max_bytes`` in all (413).
    """
    parts: list[bytes] = []
    total = 0
    while size := _chunk_size(_line(rfile)):
        total += size
        if total > max_bytes:
            raise RefusedRequestError(413, f"the request body exceeds {max_bytes} bytes.")
        data = rfile.read(size)
        if len(data) != size:
            raise RefusedRequestError(400, "the chunked body ended inside a chunk.")
        parts.append(data)
        if _line(rfile):
            raise RefusedRequestError(400, "a chunk is longer than its size line says.")
    for _ in range(_MAX_TRAILERS + 1):
        if not _line(rfile):  # the empty line after the last chunk (and any trailers)
            return b"".join(parts)
    raise RefusedRequestError(400, f"more than {_MAX_TRAILERS} trailer lines.")


def _line(rfile: Reader) -> bytes:
    """One CRLF-terminated line of the chunked framing, without its line end."""
    raw = rfile.readline(_MAX_LINE + 1)
    if len(raw) > _MAX_LINE:
        raise RefusedRequestError(400, f"a chunked framing line is longer than {_MAX_LINE} bytes.")
    if not raw.endswith(b"\n"):
        raise RefusedRequestError(400, "the chunked body ended early.")
    return raw.rstrip(b"\r\n")


def _chunk_size(line: bytes) -> int:
    """The size of a chunk from its size line (``1a;ext=x``)."""
    text = line.split(b";", 1)[0].strip().decode("latin-1")
    if not text or len(text) > 16 or not set(text) <= _HEX:
        raise RefusedRequestError(400, f"invalid chunk size line {line[:40]!r}.")
    return int(text, 16)


class RouterServer(ThreadingHTTPServer):
    """One listener of the router; its handler threads ask :attr:`router` for every answer."""

    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        *,
        router: RouterApp,
        read_timeout_s: float,
    ) -> None:
        """Bind ``address`` (port 0: a free one) and serve with ``handler``."""
        self.router = router
        self.read_timeout_s = read_timeout_s
        super().__init__(address, handler)


class _Handler(BaseHTTPRequestHandler):
    """Read one request strictly, write one answer; the subclasses decide what to answer."""

    protocol_version = "HTTP/1.1"
    server: RouterServer

    def setup(self) -> None:
        """Time out stalled clients and switch Nagle's algorithm off."""
        super().setup()
        self.connection.settimeout(self.server.read_timeout_s)  # a stalled read: TimeoutError
        # Headers and body go out in separate writes: without TCP_NODELAY, Nagle's
        # algorithm and delayed ACKs add ~40 ms to every keep-alive answer.
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the per-request access log on stderr."""
        return

    def read_body(self, *, max_bytes: int) -> bytes | None:
        """The request body, or None once a refusal (400, 408, 413, 501) was answered."""
        try:
            return read_body(self.headers, self.rfile, max_bytes=max_bytes)
        except RefusedRequestError as exc:
            self.refuse(exc.status, exc.message)
        except TimeoutError:
            self.refuse(408, "the request body did not arrive in time.")
        return None

    def refuse(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        """Answer an error of the router's own and close the connection."""
        body = json.dumps({"error": message}).encode()
        extra = {"content-type": "application/json", **(headers or {})}
        self.write(status, body, backend=_ROUTER, headers=extra, close=True)

    def write_answer(self, answer: Answer, *, close: bool) -> None:
        """Send an :class:`Answer`."""
        self.write(
            answer.status, answer.body, backend=answer.backend, headers=answer.headers, close=close
        )

    def write(
        self, status: int, body: bytes, *, backend: str, headers: dict[str, str], close: bool
    ) -> None:
        """Send one answer (``close``: then close the connection)."""
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header(BACKEND_HEADER, backend)
        self.send_header("content-length", str(len(body)))
        if close:
            self.send_header("connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)

    def answer_request(self) -> None:  # pragma: no cover - every subclass defines it
        """Answer the parsed request."""
        raise NotImplementedError

    def _dispatch(self) -> None:
        self.answer_request()

    do_GET = _dispatch  # noqa: N815
    do_POST = _dispatch  # noqa: N815
    do_PUT = _dispatch  # noqa: N815
    do_DELETE = _dispatch  # noqa: N815
    do_PATCH = _dispatch  # noqa: N815


class TrafficHandler(_Handler):
    """The traffic listener: proxy the request (``/-/…`` is not served here: 404)."""

    def answer_request(self) -> None:
        """Read the body within the limit and let the router proxy it."""
        router = self.server.router
        with router.in_flight():
            body = self.read_body(max_bytes=router.max_body_bytes)
            if body is None:
                return
            answer = router.handle_traffic(self.command, self.path, self.headers.items(), body)
            self.write_answer(answer, close=router.closing)


class AdminHandler(_Handler):
    """The admin listener: the bearer token first, then the body, then the admin answer."""

    def answer_request(self) -> None:
        """Refuse a missing or wrong token (401) before reading anything else."""
        router = self.server.router
        if not router.admin_authorized(self.headers.get("authorization")):
            self.refuse(
                401,
                "missing or wrong admin token: send Authorization: Bearer <token> (the token "
                "`metarec rollout router` printed, or rollout.router.admin_token).",
                {"www-authenticate": 'Bearer realm="metarec-router"'},
            )
            return
        body = self.read_body(max_bytes=min(router.max_body_bytes, ADMIN_MAX_BODY_BYTES))
        if body is None:
            return
        answer = router.handle_admin(self.command, self.path, body)
        self.write_answer(answer, close=router.closing)
