"""Time in one convention: timezone-aware UTC everywhere.

Databases and JSON hand back naive datetimes now and then (SQLite, some drivers); every module
turns what it reads into aware UTC with :func:`as_utc` and reads the clock with :func:`utc_now`,
so that comparisons never mix naive and aware values. Decisions that must be reproducible take
the time as an argument and call :func:`utc_now` only at the edge.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import overload


def utc_now() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


@overload
def as_utc(value: datetime) -> datetime: ...
@overload
def as_utc(value: None) -> None: ...
def as_utc(value: datetime | None) -> datetime | None:
    """``value`` as an aware UTC datetime; a naive value is taken to be UTC already.

    Args:
        value: A datetime, naive or aware, or ``None`` (returned unchanged).

    Returns:
        The same instant, timezone-aware in UTC, or ``None``.
    """
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)
