"""Typed router configs: a union told apart by ``kind``, built into the router it names."""

from __future__ import annotations

import pytest
from metarec.config import Settings
from metarec.config_rollout import RolloutSettings
from metarec.errors import ConfigError
from metarec.rollout.routers import (
    GatewayAPIRouterConfig,
    HTTPRouterClient,
    HTTPRouterConfig,
    LocalRouterConfig,
    LocalWeightedRouter,
    Router,
    build_router,
    parse_router_config,
)
from metarec.rollout.routers.factory import AdminEndpoint, admin_endpoint
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
    config = HTTPRouterConfig(url="http://127.0.0.1:9/", admin_token="t0ken")
    router = build_router(config, **SERVICES)
    assert isinstance(router, HTTPRouterClient) and isinstance(router, Router)
    assert (router.url, router.admin_token) == ("http://127.0.0.1:9", "t0ken")
    router.close()  # nothing held: a no-op
    with pytest.raises(ConfigError, match="admin_token"):  # the admin API needs its token
        build_router(HTTPRouterConfig(url="http://127.0.0.1:9/"), **SERVICES)


def test_the_router_metrics_url_follows_the_router_kind(tmp_path):
    def url(router: dict) -> str | None:
        settings = Settings(home=tmp_path, rollout=RolloutSettings(router=router))
        return router_metrics_url(settings)

    # The router's metrics are on its admin API: readable with a known URL and token only.
    assert url({"kind": "http", "url": "http://r:8", "admin_token": "t"}) == "http://r:8"
    assert url({"kind": "http", "url": "http://r:8"}) is None
    local = {"listen_host": "0.0.0.0", "listen_port": 8081, "admin_token": "t"}
    assert url(local) == "http://127.0.0.1:8082"  # admin port: listen_port + 1
    assert url({**local, "admin_host": "10.0.0.2", "admin_port": 9000}) == "http://10.0.0.2:9000"
    assert url({"listen_port": 8081}) is None  # a generated token: known only once started
    assert url({"listen_port": 0, "admin_token": "t"}) is None  # a free port: known once started
    assert url({"kind": "gateway-api"}) is None


def test_the_admin_endpoint_of_a_started_router_is_its_own():
    local = LocalWeightedRouter(**SERVICES, admin_token="t0ken").start()
    try:
        endpoint = admin_endpoint(LocalRouterConfig(listen_port=0), local)
        assert endpoint == AdminEndpoint(url=local.admin_url, token="t0ken")
        assert "t0ken" not in repr(endpoint)
    finally:
        local.stop()
    remote = HTTPRouterClient(url="http://r:8/", admin_token="x")
    assert admin_endpoint(HTTPRouterConfig(), remote) == AdminEndpoint(url="http://r:8", token="x")


def test_the_local_router_config_gives_the_admin_api_its_own_port():
    assert LocalRouterConfig().admin_listen_port == 8081  # listen_port 8080 + 1
    assert LocalRouterConfig(listen_port=0).admin_listen_port == 0  # free, like the traffic
    assert LocalRouterConfig(listen_port=9000, admin_port=0).admin_listen_port == 0
    with pytest.raises(ValidationError, match="its own port"):
        LocalRouterConfig(listen_port=9000, admin_port=9000)
    with pytest.raises(ValidationError, match="admin_port"):
        LocalRouterConfig(listen_port=65535)
    secret = LocalRouterConfig(admin_token="hunter2")
    assert "hunter2" not in repr(secret) and "hunter2" not in str(secret.model_dump_json())
