"""Build the router and metric source that the settings (``rollout:`` section) describe."""

from __future__ import annotations

from collections.abc import Callable

from metarec.config import Settings
from metarec.errors import ConfigError
from metarec.rollout.metrics import MetricSource, PrometheusMetricSource, ScrapeMetricSource
from metarec.rollout.router import (
    GatewayAPIRouter,
    HTTPRouterClient,
    LocalWeightedRouter,
    Router,
)


def build_router(settings: Settings) -> tuple[Router, Callable[[], None]]:
    """The configured router and a function that releases it.

    ``local`` starts the weighted proxy (listening at ``rollout.listen_host:listen_port``);
    ``http`` drives one started by ``metarec rollout router``; ``gateway-api`` patches the
    HTTPRoute with the pod's service account (or the local kubeconfig).
    """
    config = settings.rollout
    if config.router == "local":
        router = LocalWeightedRouter(
            production_url=config.production_url,
            canary_url=config.canary_url,
            host=config.listen_host,
            port=config.listen_port,
        ).start()
        return router, router.stop
    if config.router == "http":
        return HTTPRouterClient(url=config.router_url), lambda: None
    return (
        GatewayAPIRouter.in_cluster(
            namespace=config.namespace,
            name=config.httproute,
            production_backend=config.production_backend,
            canary_backend=config.canary_backend,
        ),
        lambda: None,
    )


def build_metrics(settings: Settings) -> MetricSource:
    """The configured metric source (``auto``: Prometheus when its URL is set)."""
    config = settings.rollout
    kind = config.metrics_source
    if kind == "auto":
        kind = "prometheus" if config.prometheus_url else "scrape"
    if kind == "prometheus":
        if not config.prometheus_url:
            raise ConfigError(
                "rollout.metrics_source is prometheus but rollout.prometheus_url is empty.",
                fix="set rollout.prometheus_url (METAREC_ROLLOUT__PROMETHEUS_URL).",
            )
        return PrometheusMetricSource(url=config.prometheus_url, version_label=config.version_label)
    return ScrapeMetricSource(production_url=config.production_url, canary_url=config.canary_url)
