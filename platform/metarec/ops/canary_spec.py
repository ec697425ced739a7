"""A canary's terms: its spec from the options a person types, and the words of its outcome.

Shared by ``metarec rollout start`` and ``metarec flows run retrain`` (durations, steps and
threshold errors read the same way), :mod:`metarec.ops.canary` and the ``canary_rollout``
component (which imports this light module, not the rollout machinery, at import time).
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import ValidationError

from metarec.errors import ConfigError
from metarec.rollout.types import RolloutSpec

Outcome = Literal["promoted", "bootstrapped", "already-production", "rolled-back", "aborted"]
BOOTSTRAP_REASON = "first production version: no incumbent to run a canary against"
PROMOTED_OUTCOMES: tuple[Outcome, ...] = ("promoted", "bootstrapped")
FAILED_OUTCOMES: tuple[Outcome, ...] = ("rolled-back", "aborted")

_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(ms|s|m|h)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(text: str) -> float:
    """``30s``, ``2m``, ``500ms``, ``1h`` or plain seconds → seconds.

    Raises:
        ConfigError: Not a duration.
    """
    match = _DURATION.match(text)
    if match is None or float(match[1]) <= 0:
        raise ConfigError(
            f"{text!r} is not a positive duration.", fix="write e.g. 30s, 2m, 500ms or 45."
        )
    return float(match[1]) * _UNITS[match[2]]


def parse_steps(text: str) -> tuple[int, ...]:
    """``10,25,50,100`` → (10, 25, 50, 100).

    Raises:
        ConfigError: Not a comma-separated list of integers.
    """
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError as exc:
        raise ConfigError(
            f"--steps {text!r} is not a list of percentages.", fix="write e.g. 10,25,50,100."
        ) from exc


def rollout_spec(
    *, steps: str | None = None, interval: str | None = None, **thresholds: Any
) -> RolloutSpec:
    """Build a :class:`RolloutSpec` from typed text; unset options keep the spec's defaults.

    Args:
        steps: Canary weights in percent, e.g. ``10,25,50,100``.
        interval: Analysis window per step, e.g. ``30s``.
        **thresholds: Other ``RolloutSpec`` fields (``max_error_rate=0.01`` …); None: default.

    Raises:
        ConfigError: An option is not valid (the first problem is named).
    """
    values = {key: value for key, value in thresholds.items() if value is not None}
    if steps is not None:
        values["steps"] = parse_steps(steps)
    if interval is not None:
        values["interval_s"] = parse_duration(interval)
    try:
        return RolloutSpec(**values)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ConfigError(
            f"Invalid rollout option {first['loc'][0]}: {first['msg']}.",
            fix="see `metarec rollout start --help`.",
        ) from exc
