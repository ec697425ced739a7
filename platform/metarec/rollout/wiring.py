"""Build the router and metric source that the settings (``rollout:`` section) describe."""

from __future__ import annotations

from collections.abc import Callable

from metarec.config import Settings
from metarec.errors import ConfigError
from metarec.rollout.metrics import MetricSource, PrometheusMetricSource, ScrapeMetricSource
from metarec.rollout.routers import Router
from metarec.rollout.routers import build_router as build_router_from_config
from metarec.rollout.routers.factory import admin_endpoint


def build_router(settings: Settings) -> tuple[Router, Callable[[], None]]:
    """The configured router and a function that releases it (its :meth:`Router.close`).

    ``rollout.router`` says which: ``local`` starts the weighted proxy (listening at its
    ``listen_host:listen_port``, in front of ``rollout.production_url`` and ``canary_url``);
    ``http`` drives one started by ``metarec rollout router`` at its ``url``; ``gateway-api``
    patches the HTTPRoute with the pod's service account (or the local kubeconfig).
    """
    rollout = settings.rollout
    router = build_router_from_config(
        rollout.router, production_url=rollout.production_url, canary_url=rollout.canary_url
    )
    return router, router.close


def router_metrics_url(settings: Settings, router: Router | None = None) -> str | None:
    """Base URL of the local router's admin API, whose caller-side metrics the analysis reads.

    See :func:`~metarec.rollout.routers.factory.admin_endpoint`: the started router's own
    when given, else what the settings say. None when it is not known (router
    ``gateway-api``; router ``local`` on a free admin port or with a generated token when
    the started router is not given): the analysis then reads traffic from the services'
    own ``/metrics``.
    """
    endpoint = admin_endpoint(settings.rollout.router, router)
    return None if endpoint is None else endpoint.url


def build_metrics(settings: Settings, *, router: Router | None = None) -> MetricSource:
    """The configured metric source (``auto``: Prometheus when its URL is set).

    The scrape source takes requests, 5xx and latency from the local router's caller-side
    metrics (router ``local`` or ``http``) and online quality from the services' ``/metrics``.

    Args:
        settings: The ``rollout:`` section says which source.
        router: The router :func:`build_router` returned (its admin API is where the local
            router's metrics are; default: derived from the settings).
    """
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
    endpoint = admin_endpoint(config.router, router)
    return ScrapeMetricSource(
        production_url=config.production_url,
        canary_url=config.canary_url,
        router_url=None if endpoint is None else endpoint.url,
        router_token=None if endpoint is None else endpoint.token,
        version_label=config.version_label,
    )
