"""Trusted callers: ``POST /feedback`` requires the feedback bearer token.

Feedback carries the observed ratings the online MAE and hit rate are computed from, and the
canary analysis judges a version on those series; so only a caller holding
``serving.feedback_token`` (the team's backend, which observes real ratings; the local canary's
traffic generator, with a token made for the run) may send it. The token is separate from the
control-plane API token: a serving client never holds a credential of the API.

* no token configured: every ``/feedback`` is refused (403, naming the setting), so a service
  started without one never lets anyone steer its quality series;
* a missing, malformed or wrong ``Authorization: Bearer …`` header: 401 with
  ``WWW-Authenticate: Bearer``.

What feedback is scored against is trusted too: only a ``/recommend`` or ``/predict`` that
carries the token is remembered (the list served, the predictions made) for later feedback
(:func:`caller_is_trusted`, read by the engine). Anyone else is answered alike, but cannot
plant predictions or lists that real feedback would then be judged against.

The check runs before the body is read; tokens are compared in constant time.
"""

from __future__ import annotations

import hmac
from contextvars import ContextVar, Token
from dataclasses import dataclass
from typing import Any

from pydantic import SecretStr

FEEDBACK_PATH = "/feedback"
TOKEN_SETTING = "serving.feedback_token (METAREC_SERVING__FEEDBACK_TOKEN)"
CHALLENGE = (b"www-authenticate", b'Bearer realm="metarec-feedback"')
# Whether the request being answered carries the feedback token (set by the request guard for
# the request's own context: each request runs in a context of its own).
_TRUSTED: ContextVar[bool] = ContextVar("metarec_trusted_caller", default=False)


def caller_is_trusted() -> bool:
    """Whether the request being answered carries the feedback token."""
    return _TRUSTED.get()


def mark_caller(trusted: bool) -> Token[bool]:
    """Answer the current request as from a trusted caller (or not) until :func:`unmark`."""
    return _TRUSTED.set(trusted)


def unmark(mark: Token[bool]) -> None:
    """Undo :func:`mark_caller` once the request is answered."""
    _TRUSTED.reset(mark)


@dataclass(frozen=True)
class Refusal:
    """Why a feedback request is refused: its status, JSON body and extra headers."""

    status: int
    body: dict[str, Any]
    headers: tuple[tuple[bytes, bytes], ...] = ()


def is_feedback_path(path: str) -> bool:
    """Whether ``path`` is the feedback endpoint (with or without trailing slashes)."""
    return path.rstrip("/") == FEEDBACK_PATH


class FeedbackGate:
    """Checks the bearer token of ``/feedback`` requests against the configured one."""

    def __init__(self, token: SecretStr | str | None) -> None:
        """Require ``token`` (None or empty: refuse all feedback)."""
        value = token.get_secret_value() if isinstance(token, SecretStr) else token
        self._token = value.encode() if value else None

    @property
    def enabled(self) -> bool:
        """Whether a token is configured (feedback can be accepted at all)."""
        return self._token is not None

    def trusts(self, authorization: bytes | None) -> bool:
        """Whether ``authorization`` (the header's value; None: absent) carries the token."""
        if self._token is None or authorization is None:
            return False
        scheme, _, presented = authorization.partition(b" ")
        return scheme.lower() == b"bearer" and hmac.compare_digest(presented.strip(), self._token)

    def refusal(self, authorization: bytes | None) -> Refusal | None:
        """None when ``authorization`` carries the token; else why the request is refused.

        Args:
            authorization: The request's ``Authorization`` header value (None: absent).
        """
        if self._token is None:
            return Refusal(
                403,
                {
                    "error": "feedback: this service takes no feedback: "
                    f"{TOKEN_SETTING} is not set. Fix: set it (a random secret, e.g. "
                    "`openssl rand -hex 32`) on the service and send it as "
                    "'Authorization: Bearer <token>' from the backend that observes ratings.",
                    "field": "authorization",
                },
            )
        if self.trusts(authorization):
            return None
        return Refusal(
            401,
            {
                "error": "authorization: POST /feedback needs the feedback token. Fix: send "
                f"'Authorization: Bearer <token>' with the value of {TOKEN_SETTING}.",
                "field": "authorization",
            },
            (CHALLENGE,),
        )
