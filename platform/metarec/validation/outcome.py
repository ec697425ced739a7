"""The outcome of one check (a Great Expectations expectation or a MetaRec check), JSON-able."""

from __future__ import annotations

import math
import re
from datetime import date, datetime
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict

ExpectationKind = Literal["integrity", "drift", "lineage"]
_ISO_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}")


class ExpectationOutcome(BaseModel):
    """The result of one expectation, JSON-able.

    MetaRec's own reference checks (:mod:`metarec.validation.reference_checks`) also set
    ``reason`` (what a failure means, or why the check was skipped) and ``skipped`` (the check
    could not run, e.g. the reference profile predates it; a skipped check passes).
    """

    model_config = ConfigDict(frozen=True)

    name: str
    type: str
    kind: ExpectationKind
    batch: str
    description: str = ""
    kwargs: dict[str, Any]
    success: bool
    observed_value: Any = None
    unexpected_count: int | None = None
    unexpected_percent: float | None = None
    partial_unexpected_list: list[Any] = []
    exception: str | None = None
    reason: str | None = None
    skipped: bool = False

    @property
    def observed(self) -> str:
        """A short, human-readable observation for tables and reports."""
        if self.exception:
            return f"error: {self.exception}"
        if self.skipped:
            return f"skipped: {self.reason}"
        if self.reason and not self.success:
            return self.reason
        if self.unexpected_count is not None and self.observed_value is None:
            if self.unexpected_count == 0:
                return "0 unexpected"
            examples = ", ".join(repr(v) for v in self.partial_unexpected_list[:3])
            percent = f" ({self.unexpected_percent:.3g}%)" if self.unexpected_percent else ""
            return f"{self.unexpected_count:,} unexpected{percent}, e.g. {examples}"
        value = self.observed_value
        if isinstance(value, float):
            return f"{value:.4g}"
        if isinstance(value, dict) and "missing" in value:
            return "missing: " + ", ".join(str(column) for column in value["missing"])
        if isinstance(value, dict) and "values" in value:
            return ", ".join(
                f"q{q:g}={v}" for q, v in zip(value["quantiles"], value["values"], strict=False)
            )
        if isinstance(value, list) and len(value) > 8:
            return f"{len(value)} columns"
        return str(value)

    @property
    def expected(self) -> str:
        """A short, human-readable statement of what the expectation requires."""
        kwargs = self.kwargs
        if "type_" in kwargs:
            return str(kwargs["type_"])
        if "value_set" in kwargs:
            return f"one of {len(kwargs['value_set'])} known values"
        if "regex" in kwargs:
            return "known tokens only"
        if "column_set" in kwargs:
            return f"{len(kwargs['column_set'])} columns present"
        if "column_list" in kwargs:
            return "unique (" + ", ".join(kwargs["column_list"]) + ")"
        if "quantile_ranges" in kwargs:
            ranges = kwargs["quantile_ranges"]
            return ", ".join(
                f"q{q:g} in [{_fmt(low)}, {_fmt(high)}]"
                for q, (low, high) in zip(ranges["quantiles"], ranges["value_ranges"], strict=False)
            )
        if "manifest_fingerprint" in kwargs:
            return "= manifest fingerprint"
        low, high = kwargs.get("min_value"), kwargs.get("max_value")
        if low is not None and high is not None:
            return f"[{_fmt(low)}, {_fmt(high)}]"
        if low is not None:
            return f">= {_fmt(low)}"
        if high is not None:
            return f"<= {_fmt(high)}"
        if self.type.endswith("_to_not_be_null"):
            return "no nulls"
        if self.type.endswith("_to_be_unique"):
            return "unique"
        return ""


def _fmt(value: Any) -> str:
    if isinstance(value, str) and _ISO_TIME.match(value):
        return value[:19] + "Z" if value.endswith("+00:00") else value
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def jsonable(value: Any) -> Any:
    """Convert GE/pandas/numpy values into plain JSON values (NaN and NA become None)."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, np.generic):
        return jsonable(value.item())
    if isinstance(value, pd.Timestamp):
        return None if pd.isna(value) else value.isoformat()
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | np.ndarray | pd.Series):
        return [jsonable(item) for item in value]
    return str(value)


def _reference_outcome(name: str, *, description: str, **fields: Any) -> ExpectationOutcome:
    """An outcome of one of MetaRec's reference checks (kind ``drift``, type ``metarec_<name>``)."""
    return ExpectationOutcome(
        name=name,
        type="metarec_" + name.split("(", 1)[0],
        kind="drift",
        batch="training_set",
        description=description,
        **fields,
    )


def check_outcome(
    name: str,
    *,
    description: str,
    value: float | str | None,
    success: bool,
    reason: str,
    min_value: float | str | None = None,
    max_value: float | str | None = None,
) -> ExpectationOutcome:
    """The outcome of one of MetaRec's reference checks (kind ``drift``, type ``metarec_<name>``).

    Args:
        name: The check's stable name (base name, with the column in parentheses if any).
        description: What the check compares.
        value: The observed statistic.
        success: Whether it lies within the bounds.
        reason: What the observation means; shown when the check fails.
        min_value: The lower bound, if any.
        max_value: The upper bound, if any.
    """
    bounds = {"min_value": min_value, "max_value": max_value}
    return _reference_outcome(
        name,
        description=description,
        kwargs={key: jsonable(item) for key, item in bounds.items() if item is not None},
        success=success,
        observed_value=jsonable(value),
        reason=reason,
    )


def at_most(
    name: str, *, description: str, value: float, bound: float, reason: str
) -> ExpectationOutcome:
    """A reference check that passes when ``value`` is at most ``bound``."""
    return check_outcome(
        name,
        description=description,
        value=value,
        max_value=bound,
        success=value <= bound,
        reason=reason,
    )


def skipped_outcome(name: str, *, description: str, reason: str) -> ExpectationOutcome:
    """A reference check that could not run (it passes, and says why it was skipped)."""
    return _reference_outcome(
        name, description=description, kwargs={}, success=True, reason=reason, skipped=True
    )


def errored_outcome(name: str, *, description: str, error: Exception) -> ExpectationOutcome:
    """A reference check that raised on this data (a column of an unexpected type): it fails."""
    return _reference_outcome(
        name,
        description=description,
        kwargs={},
        success=False,
        exception=f"{type(error).__name__}: {error}"[:200],
    )
