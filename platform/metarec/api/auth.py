"""Who may call what: the caller the request guard authenticated, and the roles it holds.

Authentication (token → identity, 401) happens once, in :mod:`metarec.api.guard`, before the
body is read; the routes only check the identity's roles here (403 names the missing role).
"""

from __future__ import annotations

from fastapi import Request

from metarec.api.guard import IDENTITY
from metarec.api.identities import Identity, Role
from metarec.errors import ApiForbiddenError, AuthError


def caller_of(request: Request) -> Identity | None:
    """The identity the guard authenticated (None: a public call)."""
    return getattr(request.state, IDENTITY, None)


def authorize(identity: Identity | None, roles: tuple[Role, ...]) -> Identity:
    """Accept ``identity`` when it holds one of ``roles``.

    Raises:
        AuthError: No identity (401).
        ApiForbiddenError: It holds none of ``roles`` (403, naming them).
    """
    if identity is None:
        raise AuthError(
            "Missing bearer token.", fix="send the header 'Authorization: Bearer <token>'."
        )
    if identity.roles.isdisjoint(roles):
        needed = " or ".join(f"'{role.value}'" for role in roles)
        raise ApiForbiddenError(
            f"Identity '{identity.name}' lacks the role {needed} this call needs.",
            fix=f"call with an identity holding {needed}, or add it to '{identity.name}' in "
            "registry.api_tokens_file.",
        )
    return identity
