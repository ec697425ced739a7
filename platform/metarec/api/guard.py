"""The request guard: a bounded body and an authenticated caller before any route reads a byte.

A pure ASGI middleware in front of the whole application (FastAPI reads and parses a body
before any dependency runs, so a check made in a dependency comes too late):

1. A ``Content-Length`` over ``registry.api_max_body_bytes`` is answered 413 at once, the body
   unread; one that is not a number of bytes, 400.
2. Every call but the public ones (the probes and the OpenAPI document, and reads unless
   ``registry.read_requires_token``) must present a token as ``Authorization: Bearer``: 401 at
   once when it is missing or unknown, the body unread. Flagger's webhooks (``/flagger/*``)
   cannot send headers: without an ``Authorization`` header, their token is the body's
   ``metadata.token`` (the body is bounded by the limit first).
3. The body is read up to the limit (a chunked one too: 413 as soon as it passes it) and handed
   to the application, with the caller's :class:`~metarec.api.identities.Identity` in
   ``request.state.identity``.

Roles are checked by the routes (:func:`metarec.api.deps.require`): 403 names the role.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Final

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from metarec.api.errors import error_response
from metarec.api.identities import Identity, IdentityBook
from metarec.errors import ApiRequestError, AuthError, ConfigError, MetaRecError
from metarec.ops.flagger import TOKEN_KEY

IDENTITY: Final = "identity"  # the key of the caller's identity in request.state
FLAGGER_PREFIX: Final = "/flagger/"
_READS: Final = frozenset({"GET", "HEAD"})


@dataclass(frozen=True)
class GuardPolicy:
    """What the guard enforces.

    Attributes:
        identities: The identities and their tokens.
        max_body_bytes: The largest request body (``registry.api_max_body_bytes``).
        open_reads: Whether reads are answered without a token (not
            ``registry.read_requires_token``).
        public_paths: Paths read without a token always (probes, OpenAPI document).
    """

    identities: IdentityBook
    max_body_bytes: int
    open_reads: bool
    public_paths: frozenset[str]


class RequestGuard:
    """Pure ASGI middleware: the size limit and authentication, before the body is parsed."""

    def __init__(self, app: ASGIApp, *, policy: GuardPolicy) -> None:
        """Guard ``app`` with ``policy``."""
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer a refused request here; hand an admitted one, body read, to the app."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            body, identity = await self._admit(scope, receive)
        except MetaRecError as exc:
            await error_response(exc)(scope, receive, send)
            return
        if body is None:  # the client went away while sending its body
            return
        scope.setdefault("state", {})[IDENTITY] = identity
        await self.app(scope, _replay(body, receive), send)

    async def _admit(self, scope: Scope, receive: Receive) -> tuple[bytes | None, Identity | None]:
        limit = self.policy.max_body_bytes
        _check_declared_length(scope, limit=limit)
        if scope["method"] in _READS and (
            self.policy.open_reads or scope["path"] in self.policy.public_paths
        ):
            return await read_body(receive, limit=limit), None
        header = _header(scope, b"authorization")
        if header is None and scope["path"].startswith(FLAGGER_PREFIX):
            body = await read_body(receive, limit=limit)
            return body, None if body is None else self._identify(metadata_token(body))
        identity = self._identify(bearer_token(header))
        return await read_body(receive, limit=limit), identity

    def _identify(self, token: bytes | None) -> Identity:
        identities = self.policy.identities
        if not identities.configured:
            raise AuthError(
                "This API has no token configured, so calls that need one are refused.",
                fix="set registry.api_tokens_file (METAREC_REGISTRY__API_TOKENS_FILE) on the "
                "server.",
            )
        if token is None:
            raise AuthError(
                "Missing bearer token.",
                fix="send the header 'Authorization: Bearer <token>' (Flagger: metadata.token).",
            )
        try:
            identity = identities.authenticate(token)
        except ConfigError as exc:
            raise ApiRequestError(
                f"The API cannot check tokens: {exc.problem}", fix=exc.fix, status=503
            ) from None
        if identity is None:
            raise AuthError(
                "Invalid bearer token.",
                fix="send the token of an identity configured on the server.",
            )
        return identity


def bearer_token(header: bytes | None) -> bytes | None:
    """The token of ``Authorization: Bearer <token>`` (None: no header, or another scheme)."""
    if header is None:
        return None
    scheme, _, token = header.partition(b" ")
    token = token.strip()
    return token if scheme.lower() == b"bearer" and token else None


def metadata_token(body: bytes) -> bytes | None:
    """``metadata.token`` of a Flagger webhook body (None: absent, or not a JSON object)."""
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return None
    metadata = payload.get("metadata") if isinstance(payload, dict) else None
    token = metadata.get(TOKEN_KEY) if isinstance(metadata, dict) else None
    if not isinstance(token, str) or not token:
        return None
    return token.encode("utf-8", "surrogatepass")


async def read_body(receive: Receive, *, limit: int) -> bytes | None:
    """The whole request body, refused as soon as it passes ``limit`` (None: client gone).

    Raises:
        ApiRequestError: The body is over ``limit`` bytes (413).
    """
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _too_large(limit, size=None)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _check_declared_length(scope: Scope, *, limit: int) -> None:
    value = _header(scope, b"content-length")
    if value is None:
        return
    if not value.isdigit():
        raise ApiRequestError(
            "The Content-Length header is not a number of bytes.",
            fix="send the body's length in bytes (or a chunked body).",
            status=400,
        )
    if len(value) > 18 or int(value) > limit:
        raise _too_large(limit, size=value.decode())


def _too_large(limit: int, *, size: str | None) -> ApiRequestError:
    declared = "" if size is None else f" ({size} bytes)"
    return ApiRequestError(
        f"The request body{declared} is over the API's limit of {limit} bytes.",
        fix="send a smaller body (the limit is registry.api_max_body_bytes on the server).",
    )


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key.lower() == name:
            return value
    return None


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that yields the body read already, then what the client sends next."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
