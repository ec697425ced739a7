"""Bearer-token checks for the control-plane API (constant-time comparison)."""

from __future__ import annotations

import hmac

from fastapi.security import HTTPAuthorizationCredentials
from pydantic import SecretStr

from metarec.errors import AuthError


def check_token(
    credentials: HTTPAuthorizationCredentials | None, *, expected: SecretStr | None
) -> None:
    """Accept the request only with ``Authorization: Bearer <the configured token>``.

    Args:
        credentials: What the client sent (None: no or malformed Authorization header).
        expected: The configured token (None: no token configured, so nothing is accepted).

    Raises:
        AuthError: Missing, malformed or wrong token, or none configured.
    """
    if expected is None or not expected.get_secret_value():
        raise AuthError(
            "This API has no token configured, so calls that need one are refused.",
            fix="set registry.api_token (METAREC_REGISTRY__API_TOKEN) on the server.",
        )
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise AuthError(
            "Missing bearer token.", fix="send the header 'Authorization: Bearer <token>'."
        )
    given = credentials.credentials.encode("utf-8", "surrogateescape")
    if not hmac.compare_digest(given, expected.get_secret_value().encode()):
        raise AuthError("Invalid bearer token.", fix="send the token configured on the server.")
