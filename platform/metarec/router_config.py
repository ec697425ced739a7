"""The typed configs of the rollout's traffic routers: one class per router, told apart by ``kind``.

They are the ``rollout.router`` setting (:class:`metarec.config.RolloutSettings`) and what
:func:`metarec.rollout.routers.build_router` builds a router from, declared once here in the
kernel so that both the settings and the routers can use them. A mapping validates into exactly
one of them and may carry the fields of that router only::

    rollout:
      router:
        kind: gateway-api        # METAREC_ROLLOUT__ROUTER__KIND=gateway-api
        namespace: ml            # METAREC_ROLLOUT__ROUTER__NAMESPACE=ml

``kind`` may be left out for the default router, ``local``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SecretStr, model_validator

DEFAULT_ROUTER_KIND = "local"


class LocalRouterConfig(BaseModel):
    """``kind: local``: run the weighted proxy in this process, in front of the two services.

    The services it proxies to are ``rollout.production_url`` and ``rollout.canary_url``. The
    proxy has two listeners: traffic at ``listen_host:listen_port`` (every path is proxied
    except ``/-/…``, which answers 404) and its admin API (``/-/rollout/weights``,
    ``/-/rollout/metrics``) at ``admin_host:admin_port``, which requires
    ``Authorization: Bearer <admin_token>``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["local"] = "local"
    listen_host: str = Field(default="127.0.0.1", description="Local proxy interface.")
    listen_port: int = Field(
        default=8080, ge=0, le=65535, description="Local proxy port (0: a free one)."
    )
    admin_host: str = Field(
        default="127.0.0.1", description="Interface of the proxy's admin API (weights, metrics)."
    )
    admin_port: int | None = Field(
        default=None,
        ge=0,
        le=65535,
        description="Port of the proxy's admin API (0: a free one; empty: listen_port + 1, or a "
        "free one when listen_port is 0).",
    )
    admin_token: SecretStr | None = Field(
        default=None,
        description="Bearer token of the admin API (empty: a random one per process, which "
        "`metarec rollout router` prints).",
    )
    max_body_bytes: int = Field(
        default=10_000_000,
        ge=1024,
        description="Larger request bodies are refused (413), on both listeners.",
    )

    @model_validator(mode="after")
    def _admin_port_is_its_own(self) -> LocalRouterConfig:
        """Refuse an admin port that is the traffic port or that cannot follow it."""
        if self.admin_port is None and self.listen_port == 65535:
            raise ValueError(
                "admin_port defaults to listen_port + 1, but listen_port is 65535: set "
                "rollout.router.admin_port (METAREC_ROLLOUT__ROUTER__ADMIN_PORT)."
            )
        if self.admin_port and self.admin_port == self.listen_port:
            raise ValueError(
                f"admin_port and listen_port are both {self.listen_port}: the admin API needs "
                "its own port; set rollout.router.admin_port to another port (0: a free one)."
            )
        return self

    @property
    def admin_listen_port(self) -> int:
        """The admin API's port: ``admin_port``, else ``listen_port + 1`` (0: a free port)."""
        if self.admin_port is not None:
            return self.admin_port
        return self.listen_port + 1 if self.listen_port else 0


class HTTPRouterConfig(BaseModel):
    """``kind: http``: drive a proxy started separately with ``metarec rollout router``.

    The controller talks to the proxy's admin API only: ``url`` is the admin URL and
    ``admin_token`` its bearer token, both of which ``metarec rollout router`` prints.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["http"] = "http"
    url: str = Field(
        default="http://127.0.0.1:8081",
        description="Base URL of the proxy's admin API (not its traffic port).",
    )
    admin_token: SecretStr | None = Field(
        default=None, description="Bearer token of the proxy's admin API (required)."
    )
    timeout_s: float = Field(default=10.0, gt=0, description="Timeout of one admin call.")


class GatewayAPIRouterConfig(BaseModel):
    """``kind: gateway-api``: patch the weights of one HTTPRoute (the pod's service account)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["gateway-api"] = "gateway-api"
    namespace: str = Field(default="default", description="Namespace of the HTTPRoute.")
    httproute: str = Field(default="metarec", description="Name of the HTTPRoute to patch.")
    production_backend: str = Field(
        default="metarec-serving", description="Production Service name in backendRefs."
    )
    canary_backend: str = Field(
        default="metarec-canary", description="Canary Service name in backendRefs."
    )


ROUTER_CONFIGS: dict[str, type[BaseModel]] = {
    "local": LocalRouterConfig,
    "http": HTTPRouterConfig,
    "gateway-api": GatewayAPIRouterConfig,
}


# The flat rollout settings of the routers before ``rollout.router`` became this union: old key
# → (router kind, its field now).
MOVED_ROUTER_KEYS: dict[str, tuple[str, str]] = {
    "listen_host": ("local", "listen_host"),
    "listen_port": ("local", "listen_port"),
    "router_url": ("http", "url"),
    "namespace": ("gateway-api", "namespace"),
    "httproute": ("gateway-api", "httproute"),
    "production_backend": ("gateway-api", "production_backend"),
    "canary_backend": ("gateway-api", "canary_backend"),
}


def moved_router_key_message(key: str) -> str:
    """Where the old flat setting ``rollout.<key>`` lives now (key of :data:`MOVED_ROUTER_KEYS`)."""
    kind, field = MOVED_ROUTER_KEYS[key]
    return (
        f"rollout.{key} moved to rollout.router.{field}, a setting of router kind {kind}: set "
        f"rollout.router.kind: {kind} and rollout.router.{field} (environment: "
        f"METAREC_ROLLOUT__ROUTER__KIND={kind}, METAREC_ROLLOUT__ROUTER__{field.upper()}) "
        f"instead of rollout.{key} (METAREC_ROLLOUT__{key.upper()})."
    )


def _kind_of_field(name: str) -> str | None:
    """The router kind that has a field ``name`` (None: no router has it)."""
    for kind, config in ROUTER_CONFIGS.items():
        if name in config.model_fields:
            return kind
    return None


def _refuse_fields_of_other_kinds(kind: str, data: dict[str, Any]) -> None:
    """Raise a ValueError naming the kind a stray field belongs to and the key to set."""
    fields = ROUTER_CONFIGS[kind].model_fields
    for name in data:
        owner = _kind_of_field(str(name))
        if name in fields or owner is None:
            continue  # a field of this kind, or a typo that pydantic reports as unknown
        own = ", ".join(n for n in fields if n != "kind")
        raise ValueError(
            f"'{name}' is a setting of router kind {owner}, not of kind {kind} (its settings: "
            f"{own}). Set rollout.router.kind: {owner} (METAREC_ROLLOUT__ROUTER__KIND={owner}) "
            f"or remove '{name}'."
        )


def _normalise(data: Any) -> Any:
    """Fill in the default ``kind`` and refuse a bare string or another kind's fields."""
    if isinstance(data, str):
        raise ValueError(
            f"the router is a table with a kind, not the string {data!r}: set "
            f"rollout.router.kind: {data} (METAREC_ROLLOUT__ROUTER__KIND={data})."
        )
    if not isinstance(data, dict):
        return data  # a config instance (or junk pydantic reports)
    kind = data.get("kind", DEFAULT_ROUTER_KIND)
    if kind not in ROUTER_CONFIGS:
        raise ValueError(f"unknown router kind {kind!r}: use one of {', '.join(ROUTER_CONFIGS)}.")
    _refuse_fields_of_other_kinds(kind, data)
    return {**data, "kind": kind}


RouterConfig = Annotated[
    LocalRouterConfig | HTTPRouterConfig | GatewayAPIRouterConfig,
    Field(discriminator="kind"),
    BeforeValidator(_normalise),
]
"""One router's config: :class:`LocalRouterConfig`, :class:`HTTPRouterConfig` or
:class:`GatewayAPIRouterConfig`, told apart by ``kind`` (default ``local``)."""
