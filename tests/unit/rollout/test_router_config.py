"""Typed router configs: a union told apart by ``kind``, built into the router it names."""

from __future__ import annotations

import pytest
from metarec.config import RolloutSettings, Settings
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
from metarec.rollout.wiring import router_metrics_url
from pydantic import ValidationError

SERVICES = {"production_url": "http://127.0.0.1:3000", "canary_url": "http://127.0.0.1:3001"}


def test_kind_selects_the_config_class_and_its_fields_only():
    config = parse_router_config({"kind": "http", "url": "http://127.0.0.1:9"})
    assert config == HTTPRouterConfig(url="http://127.0.0.1:9")
    gateway = parse_router_config({"kind": "gateway-api", "namespace": "ml"})
    assert isinstance(gateway, GatewayAPIRouterConfig) and gateway.httproute == "metarec"
    with pytest.raises(ConfigError, match="kind"):
        parse_router_config({"kind": "istio"})
    with pytest.raises(ConfigError, match="namespace"):  # a gateway-api field on a local router
        parse_router_config({"kind": "local", "listen_port": 0, "namespace": "ml"})
    with pytest.raises(ConfigError, match="listen_prot"):  # a field no router has
        parse_router_config({"kind": "local", "listen_prot": 0})
    assert parse_router_config({"listen_port": 0}) == LocalRouterConfig(listen_port=0)


def test_the_rollout_settings_hold_the_typed_config_of_their_router():
    assert RolloutSettings().router == LocalRouterConfig()
    local = RolloutSettings(router={"listen_port": 0}).router
    assert local == LocalRouterConfig(listen_host="127.0.0.1", listen_port=0)
    http = RolloutSettings(router={"kind": "http", "url": "http://r:8"}).router
    assert http == HTTPRouterConfig(url="http://r:8")
    gateway = RolloutSettings(router={"kind": "gateway-api", "namespace": "ml", "httproute": "x"})
    assert gateway.router == GatewayAPIRouterConfig(namespace="ml", httproute="x")
    assert RolloutSettings(router=gateway.router).router is gateway.router
    with pytest.raises(ValidationError, match=r"rollout\.router\.httproute"):
        RolloutSettings(httproute="x")  # the old flat key names its new place


def test_build_router_returns_the_router_its_config_names():
    router = build_router(HTTPRouterConfig(url="http://127.0.0.1:9/"), **SERVICES)
    assert isinstance(router, HTTPRouterClient) and isinstance(router, Router)
    assert router.url == "http://127.0.0.1:9"
    router.close()  # nothing held: a no-op


def test_the_router_metrics_url_follows_the_router_kind(tmp_path):
    def url(router: dict) -> str | None:
        settings = Settings(home=tmp_path, rollout=RolloutSettings(router=router))
        return router_metrics_url(settings)

    assert url({"kind": "http", "url": "http://r:8"}) == "http://r:8"
    assert url({"listen_host": "0.0.0.0", "listen_port": 8081}) == "http://127.0.0.1:8081"
    assert url({"listen_host": "10.0.0.2", "listen_port": 8081}) == "http://10.0.0.2:8081"
    assert url({"listen_port": 0}) is None  # a free port: known only once started
    assert url({"kind": "gateway-api"}) is None
