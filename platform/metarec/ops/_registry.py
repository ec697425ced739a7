"""The registry a use case works on: the caller's open one, or the configured one for the call."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from metarec.config import Settings
from metarec.registry import Registry


@contextmanager
def registry_session(settings: Settings, registry: Registry | None) -> Iterator[Registry]:
    """Yield ``registry``, or open the configured one and close it when the block ends.

    Args:
        settings: MetaRec settings (where the registry is).
        registry: An open registry the caller owns (left open), or None.
    """
    if registry is not None:
        yield registry
        return
    with Registry.open(settings) as opened:
        yield opened
