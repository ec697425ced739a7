"""Validate a team's tables against their declared schema and bring them to canonical form.

Every source ends here, the MovieLens layouts included (their built-in schema is in
:mod:`metarec.data.movielens_schema`). Canonical form:

- ``users`` / ``items``: the id (``user_id`` / ``item_id``), the declared features in declared
  order, ``valid_from`` (UTC; :data:`STATIC_PROFILE_TIMESTAMP` when the table has no such column).
  Without an attribute table, the ids seen in the interactions.
- ``interactions``: ``interaction_id``, ``user_id``, ``item_id``, then ``rating`` (rating label)
  or ``event_type`` (when declared), ``weight`` and ``label`` (1 positive, 0 not) for events,
  then ``event_timestamp`` (UTC).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from metarec.data.table_columns import (
    duplicated_rows,
    parse_feature,
    parse_ids,
    parse_numbers,
    parse_timestamps,
    require_columns,
)
from metarec.data.table_schema import (
    STATIC_PROFILE_TIMESTAMP,
    AttributeTableSpec,
    EventLabel,
    InteractionsSpec,
    RatingLabel,
    TableSchema,
)
from metarec.errors import TableFormatError

TIMESTAMP = "event_timestamp"


@dataclass(frozen=True)
class RawTables:
    """The tables as read, and how errors name each one (its file)."""

    interactions: pd.DataFrame
    users: pd.DataFrame | None = None
    items: pd.DataFrame | None = None
    labels: dict[str, str] = field(default_factory=dict)

    def label(self, table: str) -> str:
        """The file errors name for ``table``."""
        return self.labels.get(table, table)


def _label_columns(label: RatingLabel | EventLabel) -> dict[str, str]:
    if isinstance(label, RatingLabel):
        return {label.column: "interactions.label.column"}
    optional = {label.type_column: "type_column", label.weight_column: "weight_column"}
    return {column: f"interactions.label.{key}" for column, key in optional.items() if column}


def _ratings(values: pd.Series, label: RatingLabel, *, file: str) -> pd.Series:
    """Ratings within the scale: ``int64`` when all are whole, else ``float64``."""
    parsed = parse_numbers(values, label=file, what="rating")
    low, high = label.scale
    missing = parsed.isna()
    outside = missing | (parsed < low) | (parsed > high)
    if outside.any():
        position = int(np.flatnonzero(outside.to_numpy())[0])
        value = "empty" if missing.iloc[position] else repr(values.iloc[position])
        raise TableFormatError(
            file,
            column=str(values.name),
            row=position + 1,
            problem=f"rating {value} is outside the declared scale {low:g} to {high:g}.",
            fix="fix the rating, or set interactions.label.scale in the schema.",
        )
    whole = bool((parsed == np.floor(parsed)).all())
    return parsed.astype("int64") if whole else parsed


def _events(frame: pd.DataFrame, label: EventLabel, *, file: str) -> dict[str, pd.Series]:
    """``event_type`` (if declared), ``weight`` (default 1.0) and the positive ``label``."""
    columns: dict[str, pd.Series] = {}
    positive = pd.Series(True, index=frame.index)
    if label.type_column:
        types = frame[label.type_column].astype("string")
        columns["event_type"] = types
        if label.positive:
            positive = types.isin(label.positive).fillna(False).astype(bool)
    weight = pd.Series(1.0, index=frame.index)
    if label.weight_column:
        weight = parse_numbers(frame[label.weight_column], label=file, what="weight")
        negative = weight.isna() | (weight < 0)
        if negative.any():
            raise TableFormatError(
                file,
                column=label.weight_column,
                row=int(np.flatnonzero(negative.to_numpy())[0]) + 1,
                problem="a weight is missing or negative.",
                fix="give every event a weight of 0 or more.",
            )
    columns["weight"] = weight.astype("float64")
    columns["label"] = positive.astype("int64")
    return columns


def _refuse_duplicates(frame: pd.DataFrame, keys: list[str], *, file: str, why: str) -> None:
    duplicated = duplicated_rows(frame, keys)
    if duplicated.any():
        position = int(np.flatnonzero(duplicated.to_numpy())[0])
        row = frame.iloc[position]
        shown = ", ".join(f"{key}={row[key]!r}" for key in keys)
        raise TableFormatError(
            file,
            column=keys[0],
            row=position + 1,
            problem=f"duplicate key ({shown}): {why}",
            fix="keep one row per key (deduplicate the table before ingesting).",
        )


def _interaction_ids(
    out: pd.DataFrame, frame: pd.DataFrame, spec: InteractionsSpec, *, file: str
) -> pd.Series:
    """The declared key of ``frame`` (checked unique), or keys assigned in ``out``'s time order."""
    if spec.interaction_id:
        ids = parse_ids(frame[spec.interaction_id], label=file)
        if not pd.api.types.is_integer_dtype(ids):
            raise TableFormatError(
                file,
                column=spec.interaction_id,
                problem="interaction ids are text; they must be integers.",
                fix="use whole numbers, or drop interactions.interaction_id to have them assigned.",
            )
        _refuse_duplicates(
            frame, [spec.interaction_id], file=file, why="interaction ids must be unique."
        )
        return ids.astype("int64")
    order = out.sort_values([TIMESTAMP, "user_id", "item_id"], kind="stable").index
    return pd.Series(np.arange(1, len(out) + 1), index=order).reindex(out.index)


def normalise_interactions(
    frame: pd.DataFrame, spec: InteractionsSpec, *, file: str
) -> pd.DataFrame:
    """Check the interactions table and return it in canonical form (see the module docstring)."""
    require_columns(
        frame,
        {
            spec.user_id: "interactions.user_id",
            spec.item_id: "interactions.item_id",
            spec.timestamp: "interactions.timestamp",
            **_label_columns(spec.label),
            **({spec.interaction_id: "interactions.interaction_id"} if spec.interaction_id else {}),
        },
        label=file,
    )
    out = pd.DataFrame(
        {
            "user_id": parse_ids(frame[spec.user_id], label=file),
            "item_id": parse_ids(frame[spec.item_id], label=file),
        }
    )
    timestamps = parse_timestamps(frame[spec.timestamp], label=file)
    if isinstance(spec.label, RatingLabel):
        out["rating"] = _ratings(frame[spec.label.column], spec.label, file=file)
        why = "a user rates an item once at a time; which rating holds is ambiguous."
        keyed = pd.DataFrame(
            {spec.user_id: out["user_id"], spec.item_id: out["item_id"], spec.timestamp: timestamps}
        )
        _refuse_duplicates(keyed, list(keyed.columns), file=file, why=why)
    else:
        out = out.assign(**_events(frame, spec.label, file=file))
    out[TIMESTAMP] = timestamps
    out.insert(0, "interaction_id", _interaction_ids(out, frame, spec, file=file))
    if not spec.interaction_id:
        out = out.sort_values("interaction_id", kind="stable")
    return out.reset_index(drop=True)


def normalise_attributes(
    frame: pd.DataFrame, spec: AttributeTableSpec, *, key: str, table: str, file: str
) -> pd.DataFrame:
    """Check a user or item attribute table and return it in canonical form."""
    required = {spec.key: f"{table}.key"}
    if spec.valid_from:
        required[spec.valid_from] = f"{table}.valid_from"
    for name, feature in spec.features.items():
        required[feature.column or name] = f"{table}.features.{name}.column"
    require_columns(frame, required, label=file)
    out = pd.DataFrame({key: parse_ids(frame[spec.key], label=file)})
    for name, feature in spec.features.items():
        out[name] = parse_feature(frame[feature.column or name], feature, label=file)
    if spec.valid_from:
        out["valid_from"] = parse_timestamps(frame[spec.valid_from], label=file)
    else:
        out["valid_from"] = STATIC_PROFILE_TIMESTAMP
    keys = [spec.key] + ([spec.valid_from] if spec.valid_from else [])
    _refuse_duplicates(frame, keys, file=file, why=f"{table} attributes must be one row per key.")
    return out.reset_index(drop=True)


def _ids_only(ids: pd.Series, *, key: str) -> pd.DataFrame:
    unique = ids.drop_duplicates().sort_values(kind="stable").reset_index(drop=True)
    return pd.DataFrame({key: unique, "valid_from": STATIC_PROFILE_TIMESTAMP})


def _same_id_type(
    attributes: pd.DataFrame, ids: pd.Series, *, key: str, column: str, file: str
) -> None:
    if pd.api.types.is_integer_dtype(attributes[key]) != pd.api.types.is_integer_dtype(ids):
        theirs = "integers" if pd.api.types.is_integer_dtype(ids) else "text"
        raise TableFormatError(
            file,
            column=column,
            problem=f"ids differ in type from the interactions' ({theirs} there).",
            fix="use the same id type (all integers or all text) in both tables.",
        )


def normalise_tables(
    raw: RawTables, schema: TableSchema
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Validate and normalise the tables: ``users``, ``items``, ``interactions``.

    Raises:
        TableFormatError: One line naming the file, the column, the first bad row and the fix.
    """
    interactions = normalise_interactions(
        raw.interactions, schema.interactions, file=raw.label("interactions")
    )
    tables = []
    for table, key, spec, frame in (
        ("users", "user_id", schema.users, raw.users),
        ("items", "item_id", schema.items, raw.items),
    ):
        if spec is None or frame is None:
            tables.append(_ids_only(interactions[key], key=key))
            continue
        file = raw.label(table)
        attributes = normalise_attributes(frame, spec, key=key, table=table, file=file)
        _same_id_type(attributes, interactions[key], key=key, column=spec.key, file=file)
        tables.append(attributes)
    return tables[0], tables[1], interactions
