"""The HTTP client of a local weighted router's admin API.

Drives a :class:`~metarec.rollout.routers.local.LocalWeightedRouter` that runs in another
process (``metarec rollout router``), so the controller can restart while the proxy keeps
serving traffic. It talks to the router's admin listener (its own port, not the traffic port)
with the admin bearer token.
"""

from __future__ import annotations

import httpx

from metarec.errors import ConfigError, RouterError
from metarec.rollout.routers.base import ADMIN_PATH, Weights
from metarec.router_config import HTTPRouterConfig

_WHERE = (
    "rollout.router.url must be the router's admin URL and rollout.router.admin_token its "
    "token (METAREC_ROLLOUT__ROUTER__URL, METAREC_ROLLOUT__ROUTER__ADMIN_TOKEN), both printed "
    "by `metarec rollout router`"
)


class HTTPRouterClient:
    """A :class:`~metarec.rollout.routers.base.Router` for a proxy in another process."""

    def __init__(self, *, url: str, admin_token: str, timeout_s: float = 10.0) -> None:
        """Address the router's admin API.

        Args:
            url: Base URL of the router's admin listener (not its traffic port).
            admin_token: The router's admin bearer token.
            timeout_s: Timeout of one admin call.

        Raises:
            ConfigError: The token is empty.
        """
        if not admin_token.strip():
            raise ConfigError("The local router's admin token is empty.", fix=f"{_WHERE}.")
        self.url = url.rstrip("/")
        self.admin_token = admin_token
        self._url = self.url + ADMIN_PATH
        self._timeout = timeout_s

    @classmethod
    def from_config(cls, config: HTTPRouterConfig) -> HTTPRouterClient:
        """The client an :class:`HTTPRouterConfig` describes.

        Raises:
            ConfigError: ``admin_token`` is not set.
        """
        if config.admin_token is None:
            raise ConfigError(
                "rollout.router.admin_token is not set: the local router's admin API needs it.",
                fix=f"{_WHERE}.",
            )
        return cls(
            url=config.url,
            admin_token=config.admin_token.get_secret_value(),
            timeout_s=config.timeout_s,
        )

    def _call(self, method: str, payload: dict[str, int] | None = None) -> Weights:
        headers = {"authorization": f"Bearer {self.admin_token}"}
        try:
            response = httpx.request(
                method, self._url, json=payload, headers=headers, timeout=self._timeout
            )
        except httpx.HTTPError as exc:
            raise RouterError(
                f"The local router at {self._url} does not answer ({type(exc).__name__}).",
                fix=f"start it with `metarec rollout router`; {_WHERE}.",
            ) from exc
        if response.status_code == 401:
            raise RouterError(
                f"The local router at {self.url} refused the admin token (401).", fix=f"{_WHERE}."
            )
        if response.status_code == 404:
            raise RouterError(
                f"{self._url} is not a router admin API (404; a traffic port answers so).",
                fix=f"{_WHERE}.",
            )
        if response.status_code != 200:
            raise RouterError(
                f"The local router refused {method} {self._url}: {response.text}",
                fix="pass weights that are non-negative integers summing to 100.",
            )
        data = response.json()
        return Weights(production=data["production"], canary=data["canary"])

    def set_weights(self, *, production: int, canary: int) -> None:
        """Set the remote router's split."""
        Weights(production=production, canary=canary)
        self._call("PUT", {"production": production, "canary": canary})

    def weights(self) -> Weights:
        """The remote router's split."""
        return self._call("GET")

    def close(self) -> None:
        """Nothing to release: the proxy belongs to its own process and keeps running."""
