"""The declared schema of a team's own tables (``metarec data ingest --source table``).

A small YAML file maps the team's columns onto MetaRec's: where the interactions table and the
optional user and item attribute tables are, which columns hold the ids and the timestamp, what
the label is (an explicit rating on a scale, or an implicit event with an optional type and
weight), and the typed feature columns of each attribute table. Table paths are relative to the
YAML file, absolute, or fsspec URIs (``s3://…``, ``gs://…``, ``memory://…``).

The built-in MovieLens layouts are instances of the same schema
(:mod:`metarec.data.movielens_schema`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal

import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from metarec.errors import DataFormatError

# Profiles that do not change carry this validity start, so every interaction sees them.
STATIC_PROFILE_TIMESTAMP = pd.Timestamp(datetime(1970, 1, 1, tzinfo=UTC))
SCHEMA_FIX = "see docs/your-data.md for the schema keys (metarec data ingest --help)."


class FeatureType(StrEnum):
    """Types a declared feature column can have."""

    CATEGORY = "category"  # strings (or ints read as their text): stored as ``string``
    INT = "int"  # whole numbers: ``int64`` (``Int64`` when nullable)
    FLOAT = "float"  # numbers: ``float64``
    CATEGORY_LIST = "category_list"  # a list, or a separator-joined string: stored joined
    VECTOR = "vector"  # a fixed-length list of numbers (parquet list, or "0.1,0.2" in CSV)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FeatureSpec(_Strict):
    """One declared feature column of an attribute table."""

    type: FeatureType
    column: str | None = None  # the source column (default: the feature's name)
    nullable: bool = False
    separator: str = "|"  # category_list: the joiner in storage (and in CSV text)
    dim: int | None = Field(default=None, ge=1)  # vector: expected length (default: the first's)


class AttributeTableSpec(_Strict):
    """A user or item attribute table: its key column and its typed feature columns."""

    path: str
    key: str
    valid_from: str | None = None  # optional column: when each row's values start to hold
    features: dict[str, FeatureSpec] = {}


class RatingLabel(_Strict):
    """An explicit rating in ``column``, within ``scale`` (inclusive)."""

    kind: Literal["rating"]
    column: str = "rating"
    scale: tuple[float, float] = (1, 5)

    @model_validator(mode="after")
    def _check_scale(self) -> RatingLabel:
        if self.scale[0] >= self.scale[1]:
            raise ValueError("scale must be [lowest, highest] with lowest < highest")
        return self


class EventLabel(_Strict):
    """An implicit event: every row is an event; its type decides whether it is positive."""

    kind: Literal["event"]
    type_column: str | None = None
    weight_column: str | None = None
    positive: list[str] = []  # event types that count as positive (default: all of them)

    @model_validator(mode="after")
    def _check_positive(self) -> EventLabel:
        if self.positive and self.type_column is None:
            raise ValueError("positive event types need a type_column")
        return self


class InteractionsSpec(_Strict):
    """The interactions table: ids, timestamp and label."""

    path: str
    user_id: str = "user_id"
    item_id: str = "item_id"
    timestamp: str = "timestamp"
    interaction_id: str | None = None  # a unique integer key (default: assigned in time order)
    label: Annotated[RatingLabel | EventLabel, Field(discriminator="kind")]


class TableSchema(_Strict):
    """A declared schema: the interactions table and optional user and item attribute tables."""

    interactions: InteractionsSpec
    users: AttributeTableSpec | None = None
    items: AttributeTableSpec | None = None

    def text_columns(self, table: str) -> set[str]:
        """Source columns of ``table`` that hold text whatever they look like (categories)."""
        if table == "interactions":
            label = self.interactions.label
            return (
                {label.type_column}
                if isinstance(label, EventLabel) and label.type_column
                else set()
            )
        spec = self.users if table == "users" else self.items
        textual = (FeatureType.CATEGORY, FeatureType.CATEGORY_LIST)
        return {
            feature.column or name
            for name, feature in (spec.features if spec else {}).items()
            if feature.type in textual
        }

    def declared_features(self) -> dict[str, str]:
        """``"users.country": "category"``-style names and types of every declared feature."""
        declared: dict[str, str] = {}
        for table, spec in (("users", self.users), ("items", self.items)):
            for name, feature in (spec.features if spec else {}).items():
                declared[f"{table}.{name}"] = feature.type.value
        return declared


def resolve_location(location: str, *, base: Path) -> str:
    """A table path from the YAML: URIs and absolute paths as given, others relative to ``base``."""
    if "://" in location or Path(location).is_absolute():
        return location
    return str(base / location)


def _validation_problem(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"] if not str(part).startswith("function"))
    message = " ".join(str(first["msg"]).split())
    return f"key {where or '(top level)'}: {message}."


def load_table_schema(path: Path) -> TableSchema:
    """Read and check a schema YAML file.

    Args:
        path: The YAML file.

    Returns:
        The schema; its table paths are still as written (see :func:`resolve_location`).

    Raises:
        DataFormatError: The file is missing, not YAML, or does not match the schema (one line
            naming the file and the key).
    """
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise DataFormatError(
            path, problem=f"cannot read the schema file ({exc.strerror}).", fix=SCHEMA_FIX
        ) from exc
    except yaml.YAMLError as exc:
        problem = " ".join(str(exc).split())
        raise DataFormatError(path, problem=f"not valid YAML ({problem}).", fix=SCHEMA_FIX) from exc
    if not isinstance(raw, dict):
        raise DataFormatError(
            path, problem="the schema must be a mapping with an interactions key.", fix=SCHEMA_FIX
        )
    try:
        return TableSchema.model_validate(raw)
    except ValidationError as exc:
        raise DataFormatError(path, problem=_validation_problem(exc), fix=SCHEMA_FIX) from exc
