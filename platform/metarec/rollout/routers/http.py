"""The HTTP client of a local weighted router's admin endpoint.

Drives a :class:`~metarec.rollout.routers.local.LocalWeightedRouter` that runs in another
process (``metarec rollout router``), so the controller can restart while the proxy keeps
serving traffic.
"""

from __future__ import annotations

import httpx

from metarec.errors import RouterError
from metarec.rollout.routers.base import ADMIN_PATH, Weights
from metarec.router_config import HTTPRouterConfig


class HTTPRouterClient:
    """A :class:`~metarec.rollout.routers.base.Router` for a proxy in another process."""

    def __init__(self, *, url: str, timeout_s: float = 10.0) -> None:
        """Address the router at ``url`` (its base URL)."""
        self.url = url.rstrip("/")
        self._url = self.url + ADMIN_PATH
        self._timeout = timeout_s

    @classmethod
    def from_config(cls, config: HTTPRouterConfig) -> HTTPRouterClient:
        """The client an :class:`HTTPRouterConfig` describes."""
        return cls(url=config.url, timeout_s=config.timeout_s)

    def _call(self, method: str, payload: dict[str, int] | None = None) -> Weights:
        try:
            response = httpx.request(method, self._url, json=payload, timeout=self._timeout)
        except httpx.HTTPError as exc:
            raise RouterError(
                f"The local router at {self._url} does not answer ({type(exc).__name__}).",
                fix="start it with `metarec rollout router` or correct rollout.router.url.",
            ) from exc
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
