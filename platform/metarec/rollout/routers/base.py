"""The router interface every traffic router implements, and the split it moves.

Shaped like Flagger's ``pkg/router``: one small interface, one module per provider
(:mod:`~metarec.rollout.routers.local`, :mod:`~metarec.rollout.routers.http`,
:mod:`~metarec.rollout.routers.gateway_api`), built from a typed config by
:func:`metarec.rollout.routers.factory.build_router`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from metarec.errors import RouterError

# The local router's admin endpoint: GET/PUT the weights as {"production": p, "canary": c}.
ADMIN_PATH = "/-/rollout/weights"
# Every answer of the local router names the side that gave it ("router" for its own).
BACKEND_HEADER = "x-metarec-backend"


@dataclass(frozen=True)
class Weights:
    """A traffic split in percent; production + canary is always 100."""

    production: int
    canary: int

    def __post_init__(self) -> None:
        """Refuse splits that are not two non-negative integers summing to 100."""
        for value in (self.production, self.canary):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise RouterError(
                    f"Weights must be non-negative integers, got production={self.production!r}, "
                    f"canary={self.canary!r}.",
                    fix="pass whole percentages, e.g. production=90, canary=10.",
                )
        if self.production + self.canary != 100:
            raise RouterError(
                f"Weights must sum to 100, got production={self.production} + "
                f"canary={self.canary} = {self.production + self.canary}.",
                fix="pass complementary percentages, e.g. production=75, canary=25.",
            )


@runtime_checkable
class Router(Protocol):
    """Moves traffic between the production and the canary service."""

    def set_weights(self, *, production: int, canary: int) -> None:
        """Route ``production`` % and ``canary`` % of the traffic (they sum to 100).

        Idempotent: setting the current weights again changes nothing.
        """
        ...

    def weights(self) -> Weights:
        """The split in force."""
        ...

    def close(self) -> None:
        """Release what the router holds (a listening proxy stops); safe to call twice."""
        ...
