"""Build a router from its typed config (Flagger's router factory, Feast's typed provider configs).

The configs are declared once in the kernel (:mod:`metarec.router_config`), where the settings
(``rollout.router``) use them too: :data:`RouterConfig` is their union, told apart by ``kind``,
so a config dict (``{"kind": "gateway-api", "namespace": ...}``) validates into exactly one of
them and names the fields of that router only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import TypeAdapter, ValidationError

from metarec.errors import ConfigError
from metarec.rollout.routers.base import Router
from metarec.rollout.routers.gateway_api import GatewayAPIRouter
from metarec.rollout.routers.http import HTTPRouterClient
from metarec.rollout.routers.local import LocalWeightedRouter
from metarec.router_config import (
    GatewayAPIRouterConfig,
    HTTPRouterConfig,
    LocalRouterConfig,
    RouterConfig,
)

_ADAPTER: TypeAdapter[RouterConfig] = TypeAdapter(RouterConfig)
_WILDCARD_HOSTS = ("0.0.0.0", "::", "")


@dataclass(frozen=True)
class AdminEndpoint:
    """A local router's admin API: its base URL and bearer token (to read its metrics)."""

    url: str
    token: str = field(repr=False)


def parse_router_config(data: dict[str, Any]) -> RouterConfig:
    """Validate a plain mapping into the config class its ``kind`` names (default ``local``).

    Raises:
        ConfigError: Unknown ``kind``, or fields that this kind of router does not have.
    """
    try:
        return _ADAPTER.validate_python(data)
    except ValidationError as exc:
        raise ConfigError(
            f"Invalid router config: {exc}",
            fix="set kind to local, http or gateway-api and only that router's fields.",
        ) from exc


def build_router(config: RouterConfig, *, production_url: str, canary_url: str) -> Router:
    """The router ``config`` describes; a ``local`` one is started (listening).

    Release it with :meth:`Router.close` (stops a local proxy; a no-op for the others).

    Args:
        config: Which router, and its settings.
        production_url: Base URL of the production service, the upstream of a ``local``
            router (``rollout.production_url``).
        canary_url: Base URL of the canary service, the upstream of a ``local`` router. An
            ``http`` router's proxy has its own upstreams and a ``gateway-api`` router names
            Kubernetes Services in its config: both ignore the two URLs.
    """
    match config:
        case LocalRouterConfig():
            local = LocalWeightedRouter.from_config(
                config, production_url=production_url, canary_url=canary_url
            )
            return local.start()
        case HTTPRouterConfig():
            return HTTPRouterClient.from_config(config)
        case GatewayAPIRouterConfig():
            return GatewayAPIRouter.from_config(config)
    raise ConfigError(  # pragma: no cover - the union is exhaustive
        f"Unknown router config {config!r}.", fix="use kind local, http or gateway-api."
    )


def admin_endpoint(config: RouterConfig, router: Router | None = None) -> AdminEndpoint | None:
    """The admin API of the local router that ``router`` is or that ``config`` describes.

    The started router's own when given: a :class:`LocalWeightedRouter`'s admin listener and
    token, an :class:`HTTPRouterClient`'s URL and token. Else from ``config``: kind ``http``,
    its ``url`` and ``admin_token``; kind ``local``, ``admin_host`` (a wildcard host is reached
    on 127.0.0.1) and its admin port, when both that port and ``admin_token`` are set (a free
    port or a generated token are known only to the started router). None otherwise, and for
    ``gateway-api`` (on a cluster the mesh or gateway exports the caller-side metrics).
    """
    if isinstance(router, LocalWeightedRouter):
        return AdminEndpoint(url=router.admin_url, token=router.admin_token)
    if isinstance(router, HTTPRouterClient):
        return AdminEndpoint(url=router.url, token=router.admin_token)
    if isinstance(config, HTTPRouterConfig) and config.admin_token is not None:
        return AdminEndpoint(
            url=config.url.rstrip("/"), token=config.admin_token.get_secret_value()
        )
    if isinstance(config, LocalRouterConfig) and config.admin_token is not None:
        port = config.admin_listen_port
        host = "127.0.0.1" if config.admin_host in _WILDCARD_HOSTS else config.admin_host
        if port:
            return AdminEndpoint(
                url=f"http://{host}:{port}", token=config.admin_token.get_secret_value()
            )
    return None
