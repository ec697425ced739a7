"""Typed settings of the ``rollout`` section: the canary controller and the deploy step."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from metarec.router_config import (
    MOVED_ROUTER_KEYS,
    LocalRouterConfig,
    RouterConfig,
    moved_router_key_message,
)


class DeploySettings(BaseModel):
    """Where the deploy step sets a new version (``rollout.deploy``); ``none`` on a laptop."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["none", "kubernetes"] = Field(
        default="none",
        description="`none`: no Deployment to patch (the local canary serves the versions). "
        "`kubernetes`: patch the serving Deployment through the Kubernetes API (pod's "
        "ServiceAccount), then wait for the cluster's canary engine.",
    )
    engine: Literal["embedded", "flagger"] = Field(
        default="embedded",
        description="`embedded`: set the version on the canary Deployment, then start a rollout "
        "for the rollout controller. `flagger`: set it on Flagger's target Deployment and the "
        "Canary's webhooks (metadata.version), then wait for the registry to follow Flagger.",
    )
    namespace: str = Field(default="default", description="Namespace of the Deployment.")
    deployment: str = Field(
        default="metarec-serving-canary", description="Name of the Deployment to patch."
    )
    container: str = Field(default="adaptation", description="Its serving container.")
    port: int = Field(default=3000, ge=1, le=65535, description="`serve --port` of it.")
    flagger_canary: str = Field(
        default="",
        description="Engine `flagger`: name of the Flagger Canary whose webhooks get the "
        "version. Required with that engine.",
    )
    ready_timeout_s: float = Field(
        default=600.0,
        gt=0,
        description="Engine `embedded`: how long to wait for the canary Deployment's new pods "
        "before the rollout starts.",
    )

    @model_validator(mode="after")
    def _flagger_needs_a_canary(self) -> DeploySettings:
        if self.kind == "kubernetes" and self.engine == "flagger" and not self.flagger_canary:
            raise ValueError("rollout.deploy.flagger_canary is required with engine flagger.")
        return self


class RolloutSettings(BaseModel):
    """The canary rollout controller: router, metric source and where the services are."""

    model_config = ConfigDict(extra="forbid")

    router: RouterConfig = Field(
        default_factory=LocalRouterConfig,
        description="The router that splits the traffic, a table told apart by `kind`. `local`: "
        "the controller itself runs the weighted proxy in front of the two services "
        "(listen_host:listen_port). `http`: drive a proxy started separately with `metarec "
        "rollout router` at url. `gateway-api`: patch the weights of a Kubernetes HTTPRoute.",
    )
    production_url: str = Field(
        default="http://127.0.0.1:3000",
        description="Production service base URL (the local router's upstream; its /metrics "
        "are scraped).",
    )
    canary_url: str = Field(
        default="http://127.0.0.1:3001",
        description="Canary service base URL (the local router's upstream; its /metrics are "
        "scraped).",
    )
    metrics_source: Literal["auto", "scrape", "prometheus"] = Field(
        default="auto",
        description="`scrape`: the services' /metrics. `prometheus`: the Prometheus HTTP API at "
        "prometheus_url. `auto`: Prometheus when prometheus_url is set, else scrape.",
    )
    prometheus_url: str | None = Field(default=None, description="Prometheus base URL.")
    version_label: str = Field(
        default="{model}:v{version}",
        description="How the adaptation service writes the model_version metric label.",
    )
    poll_s: float = Field(default=1.0, gt=0, description="Controller reconcile period.")
    deploy: DeploySettings = Field(default_factory=DeploySettings)

    @model_validator(mode="before")
    @classmethod
    def _refuse_flat_router_keys(cls, data: Any) -> Any:
        """Name the new key of a router setting given at its old, flat place."""
        if isinstance(data, dict):
            for key in data:
                if key in MOVED_ROUTER_KEYS:
                    raise ValueError(moved_router_key_message(str(key)))
        return data
