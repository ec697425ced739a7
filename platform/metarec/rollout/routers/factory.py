"""Build a router from its typed config (Flagger's router factory, Feast's typed provider configs).

The configs are declared once in the kernel (:mod:`metarec.router_config`), where the settings
(``rollout.router``) use them too: :data:`RouterConfig` is their union, told apart by ``kind``,
so a config dict (``{"kind": "gateway-api", "namespace": ...}``) validates into exactly one of
them and names the fields of that router only.
"""

from __future__ import annotations

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
