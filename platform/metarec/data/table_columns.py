"""Check and convert one column of a team's table to its canonical dtype.

Each function refuses a bad column with a :class:`~metarec.errors.TableFormatError` naming the
file, the column, the first bad row (1-based, header excluded) and the fix.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import pandas as pd

from metarec.data.table_schema import FeatureSpec, FeatureType
from metarec.errors import TableFormatError

_DIGITS = re.compile(r"-?\d+")
_VECTOR_SPLIT = re.compile(r"[,\s;]+")


def _first(mask: pd.Series) -> int:
    """Position of the first ``True`` in ``mask``."""
    return int(np.flatnonzero(mask.to_numpy(dtype=bool))[0])


def _refuse(values: pd.Series, mask: pd.Series, *, label: str, problem: str, fix: str) -> None:
    """Raise for the first row where ``mask`` holds, quoting its value, if there is one."""
    if not mask.any():
        return
    position = _first(mask)
    value = values.iloc[position]
    raise TableFormatError(
        label,
        column=str(values.name),
        row=position + 1,
        problem=problem.format(value=repr(value) if not _is_missing(value) else "empty"),
        fix=fix,
    )


def _is_missing(value: object) -> bool:
    return value is None or (not isinstance(value, list | np.ndarray) and bool(pd.isna(value)))


def _missing(values: pd.Series) -> pd.Series:
    """``True`` where a value is missing (cell by cell only where cells may hold lists)."""
    return values.map(_is_missing) if values.dtype == object else values.isna()


def require_columns(frame: pd.DataFrame, columns: dict[str, str], *, label: str) -> None:
    """Refuse a table lacking any of ``columns`` (column name → the YAML key that names it)."""
    for column, key in columns.items():
        if column not in frame.columns:
            present = ", ".join(map(str, frame.columns))
            raise TableFormatError(
                label,
                column=column,
                problem=f"missing (named by {key}); the table has: {present}.",
                fix=f"add the column to the table, or set {key} in the schema to the column "
                "that holds it.",
            )


def parse_ids(values: pd.Series, *, label: str) -> pd.Series:
    """Ids as ``int64`` (integers) or ``string`` (text); other types or missing ids are refused."""
    if pd.api.types.is_integer_dtype(values) and not values.hasnans:
        return values.astype("int64")
    missing = _missing(values) | (values.astype("string").str.strip() == "").fillna(False)
    _refuse(values, missing, label=label, problem="an id is missing.", fix="give every row an id.")
    if pd.api.types.is_bool_dtype(values) or pd.api.types.is_float_dtype(values):  # no ints here
        kind = "true/false" if pd.api.types.is_bool_dtype(values) else "decimal numbers"
        raise TableFormatError(
            label,
            column=str(values.name),
            problem=f"ids are {kind}; ids must be integers or strings.",
            fix="store the ids as whole numbers or as text.",
        )
    not_text = ~values.map(lambda value: isinstance(value, str))
    _refuse(
        values,
        not_text,
        label=label,
        problem="id {value} is neither an integer nor a string.",
        fix="store the ids as whole numbers or as text.",
    )
    return values.astype("string")


def parse_timestamps(values: pd.Series, *, label: str) -> pd.Series:
    """UTC timestamps from datetimes, unix seconds (integers) or ISO-8601 text."""
    fix = "use unix seconds (an integer) or ISO-8601 such as 2024-05-01T12:30:00Z."
    if pd.api.types.is_datetime64_any_dtype(values):
        _refuse(values, values.isna(), label=label, problem="a timestamp is missing.", fix=fix)
        return pd.to_datetime(values, utc=True)
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        bad = values.isna() | (values != np.floor(values))
        _refuse(values, bad, label=label, problem="timestamp {value} is not unix seconds.", fix=fix)
        return pd.to_datetime(values.astype("int64"), unit="s", utc=True)
    text = values.astype("string").str.strip()
    seconds = text.str.fullmatch(_DIGITS.pattern).fillna(False).astype(bool)
    if bool(seconds.all()):
        return pd.to_datetime(text.astype("int64"), unit="s", utc=True)
    parsed = pd.to_datetime(text.where(~seconds), format="ISO8601", utc=True, errors="coerce")
    if seconds.any():
        parsed = parsed.astype("datetime64[ns, UTC]")
        as_seconds = pd.to_datetime(text[seconds].astype("int64"), unit="s", utc=True)
        parsed[seconds] = as_seconds.astype("datetime64[ns, UTC]")
    _refuse(values, parsed.isna(), label=label, problem="cannot parse timestamp {value}.", fix=fix)
    return parsed


def parse_numbers(values: pd.Series, *, label: str, what: str, whole: bool = False) -> pd.Series:
    """Numbers (``float64``), refusing text; with ``whole``, refusing fractions too."""
    parsed = pd.to_numeric(values, errors="coerce")
    bad = parsed.isna() & ~_missing(values)
    kind = "a whole number" if whole else "a number"
    fix = f"make every {what} {kind}."
    _refuse(values, bad, label=label, problem=f"{what} {{value}} is not {kind}.", fix=fix)
    if whole:
        fraction = parsed.notna() & (parsed != np.floor(parsed))
        _refuse(values, fraction, label=label, problem=f"{what} {{value}} is not {kind}.", fix=fix)
    return parsed.astype("float64")


def _as_list(value: object, *, separator: str | None) -> list | None:
    """A list value from a list/array cell or from text (``a|b`` or ``0.1,0.2`` / ``[0.1 0.2]``)."""
    if isinstance(value, list | tuple | np.ndarray):
        return list(value)
    if isinstance(value, str):
        text = value.strip().strip("[]").strip()
        if not text:
            return []
        parts = text.split(separator) if separator else _VECTOR_SPLIT.split(text)
        return [part.strip() for part in parts]
    return None


def _category_list(values: pd.Series, spec: FeatureSpec, *, label: str) -> pd.Series:
    """Categories joined by the declared separator (stored as ``string``)."""
    lists = values.map(lambda value: _as_list(value, separator=spec.separator))
    _refuse(
        values,
        lists.isna() & ~values.map(_is_missing),
        label=label,
        problem="{value} is not a list of categories.",
        fix=f"write a list, or text joined by {spec.separator!r}.",
    )
    joined = lists.map(
        lambda items: None if items is None else spec.separator.join(map(str, items))
    )
    return joined.astype("string")


def _vector(values: pd.Series, spec: FeatureSpec, *, label: str) -> pd.Series:
    """Fixed-length float vectors (a list column; text as ``0.1,0.2`` or ``[0.1 0.2]``)."""
    lists = values.map(lambda value: _as_list(value, separator=None))

    def as_floats(items: list | None) -> list[float] | None:
        try:
            return None if items is None else [float(item) for item in items]
        except (TypeError, ValueError):
            return None

    vectors = lists.map(as_floats)
    not_vector = vectors.isna() & ~values.map(_is_missing)
    fix = "write each vector as a list of numbers (CSV: quoted 0.1,0.2,… or [0.1 0.2 …])."
    _refuse(values, not_vector, label=label, problem="{value} is not a list of numbers.", fix=fix)
    lengths = vectors.map(lambda vector: -1 if vector is None else len(vector))
    observed = lengths[lengths >= 0]
    dim = spec.dim or (int(observed.iloc[0]) if len(observed) else 0)
    wrong = (lengths >= 0) & (lengths != dim)
    problem = f"vector {{value}} does not have the declared length {dim}."
    _refuse(values, wrong, label=label, problem=problem, fix="give every vector the same length.")
    return vectors


def parse_feature(values: pd.Series, spec: FeatureSpec, *, label: str) -> pd.Series:
    """One declared feature column, converted to its canonical dtype (see :class:`FeatureType`)."""
    if not spec.nullable:
        fix = "fill the missing values, or declare the feature nullable: true."
        _refuse(values, _missing(values), label=label, problem="a value is missing.", fix=fix)
    what = f"{values.name} value"
    if spec.type is FeatureType.CATEGORY:
        return values.astype("string")
    if spec.type is FeatureType.INT:
        parsed = parse_numbers(values, label=label, what=what, whole=True)
        return parsed.astype("Int64" if spec.nullable else "int64")
    if spec.type is FeatureType.FLOAT:
        return parse_numbers(values, label=label, what=what)
    if spec.type is FeatureType.CATEGORY_LIST:
        return _category_list(values, spec, label=label)
    return _vector(values, spec, label=label)


def duplicated_rows(frame: pd.DataFrame, keys: Sequence[str]) -> pd.Series:
    """``True`` on every row whose ``keys`` repeat an earlier row's."""
    return frame.duplicated(subset=list(keys), keep="first")
