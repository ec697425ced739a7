"""Build a router from its typed config (Flagger's router factory, Feast's typed provider configs).

Each router module owns its config class; :data:`RouterConfig` is their union, told apart by
``kind``, so a config dict (``{"kind": "gateway-api", "namespace": ...}``) validates into
exactly one of them and names the fields of that router only.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, TypeAdapter, ValidationError

from metarec.errors import ConfigError
from metarec.rollout.routers.base import Router
from metarec.rollout.routers.gateway_api import GatewayAPIRouter, GatewayAPIRouterConfig
from metarec.rollout.routers.http import HTTPRouterClient, HTTPRouterConfig
from metarec.rollout.routers.local import LocalRouterConfig, LocalWeightedRouter

RouterConfig = Annotated[
    LocalRouterConfig | HTTPRouterConfig | GatewayAPIRouterConfig,
    Field(discriminator="kind"),
]
_ADAPTER: TypeAdapter[RouterConfig] = TypeAdapter(RouterConfig)


def parse_router_config(data: dict[str, Any]) -> RouterConfig:
    """Validate a plain mapping into the config class its ``kind`` names.

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


def build_router(config: RouterConfig) -> Router:
    """The router ``config`` describes; a ``local`` one is started (listening).

    Release it with :meth:`Router.close` (stops a local proxy; a no-op for the others).
    """
    match config:
        case LocalRouterConfig():
            return LocalWeightedRouter.from_config(config).start()
        case HTTPRouterConfig():
            return HTTPRouterClient.from_config(config)
        case GatewayAPIRouterConfig():
            return GatewayAPIRouter.from_config(config)
    raise ConfigError(  # pragma: no cover - the union is exhaustive
        f"Unknown router config {config!r}.", fix="use kind local, http or gateway-api."
    )
