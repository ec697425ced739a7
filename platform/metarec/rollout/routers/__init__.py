"""Traffic routers: one small interface, one module per provider, built from a typed config.

* :mod:`~metarec.rollout.routers.base`: :class:`Router` (``set_weights``, ``weights``,
  ``close``) and :class:`Weights`.
* :mod:`~metarec.rollout.routers.local`: :class:`LocalWeightedRouter`, an HTTP reverse proxy in
  front of two local services (the embedded default), with its caller-side metrics
  (:mod:`~metarec.rollout.routers.local_metrics`).
* :mod:`~metarec.rollout.routers.http`: :class:`HTTPRouterClient`, drives a local router in
  another process (``metarec rollout router``) through its admin endpoint.
* :mod:`~metarec.rollout.routers.gateway_api`: :class:`GatewayAPIRouter`, the ``backendRefs``
  weights of a Kubernetes Gateway API ``HTTPRoute``.
* :mod:`~metarec.rollout.routers.factory`: :func:`build_router` from a :data:`RouterConfig`.

The configs (:class:`LocalRouterConfig`, :class:`HTTPRouterConfig`,
:class:`GatewayAPIRouterConfig` and their union :data:`RouterConfig`, told apart by ``kind``)
live in the kernel, :mod:`metarec.router_config`, because the settings (``rollout.router``) are
made of them too; they are re-exported here.
"""

from metarec.rollout.routers.base import Router, Weights
from metarec.rollout.routers.factory import build_router, parse_router_config
from metarec.rollout.routers.gateway_api import GatewayAPIRouter
from metarec.rollout.routers.http import HTTPRouterClient
from metarec.rollout.routers.local import LocalWeightedRouter
from metarec.router_config import (
    GatewayAPIRouterConfig,
    HTTPRouterConfig,
    LocalRouterConfig,
    RouterConfig,
)

__all__ = [
    "GatewayAPIRouter",
    "GatewayAPIRouterConfig",
    "HTTPRouterClient",
    "HTTPRouterConfig",
    "LocalRouterConfig",
    "LocalWeightedRouter",
    "Router",
    "RouterConfig",
    "Weights",
    "build_router",
    "parse_router_config",
]
