"""Typed router configs: a union told apart by ``kind``, built into the router it names."""

from __future__ import annotations

import pytest
from metarec.config import RolloutSettings
from metarec.errors import ConfigError
from metarec.rollout.routers import (
    GatewayAPIRouterConfig,
    HTTPRouterClient,
    HTTPRouterConfig,
    LocalRouterConfig,
    Router,
    build_router,
    parse_router_config,
)
from metarec.rollout.wiring import router_config


def test_kind_selects_the_config_class_and_its_fields_only():
    config = parse_router_config({"kind": "http", "url": "http://127.0.0.1:9"})
    assert config == HTTPRouterConfig(url="http://127.0.0.1:9")
    gateway = parse_router_config({"kind": "gateway-api", "namespace": "ml"})
    assert isinstance(gateway, GatewayAPIRouterConfig) and gateway.httproute == "metarec"
    with pytest.raises(ConfigError, match="kind"):
        parse_router_config({"kind": "istio"})
    with pytest.raises(ConfigError, match="namespace"):  # a gateway-api field on a local router
        parse_router_config(
            {"kind": "local", "production_url": "a", "canary_url": "b", "namespace": "ml"}
        )


def test_flat_settings_become_the_typed_config_of_their_router():
    local = router_config(RolloutSettings(listen_port=0))
    assert local == LocalRouterConfig(
        production_url="http://127.0.0.1:3000", canary_url="http://127.0.0.1:3001"
    )
    assert router_config(RolloutSettings(router="http", router_url="http://r:8")) == (
        HTTPRouterConfig(url="http://r:8")
    )
    gateway = router_config(RolloutSettings(router="gateway-api", namespace="ml", httproute="x"))
    assert gateway == GatewayAPIRouterConfig(namespace="ml", httproute="x")


def test_build_router_returns_the_router_its_config_names():
    router = build_router(HTTPRouterConfig(url="http://127.0.0.1:9/"))
    assert isinstance(router, HTTPRouterClient) and isinstance(router, Router)
    assert router.url == "http://127.0.0.1:9"
    router.close()  # nothing held: a no-op
