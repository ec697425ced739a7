"""The features a ``table`` snapshot declares, and the Feast types they are registered with.

A team's schema YAML declares typed attribute columns (``users.country: category``,
``items.text_embedding: vector`` …); the snapshot's manifest records that schema. This module
reads it back as :class:`DeclaredFeature` values: the Feast field of each feature, and what the
validation suite checks of it (nulls, ranges, category sets, vector dimension).
"""

from __future__ import annotations

from typing import Literal

import pyarrow.parquet as pq
from feast import Field
from feast.types import Array, FeastType, Float64, Int64, String
from pydantic import BaseModel, ConfigDict

from metarec.data.snapshots import SnapshotInfo
from metarec.data.table_schema import FeatureType, TableSchema
from metarec.errors import FeatureStoreError

Owner = Literal["users", "items", "extra"]
# The declared type → the Feast type of the column as the snapshot stores it.
FEAST_TYPES: dict[FeatureType, FeastType] = {
    FeatureType.CATEGORY: String,
    FeatureType.INT: Int64,
    FeatureType.FLOAT: Float64,
    FeatureType.CATEGORY_LIST: String,  # stored joined by its separator
    FeatureType.VECTOR: Array(Float64),  # stored as a list of float64, one length
}


class DeclaredFeature(BaseModel):
    """One feature of a training set whose checks follow from its type."""

    model_config = ConfigDict(frozen=True)

    name: str
    owner: Owner
    type: FeatureType
    nullable: bool = False
    dim: int | None = None  # vector: the length every value has
    separator: str = "|"  # category_list: the joiner of the stored text

    def field(self) -> Field:
        """The Feast field this feature is registered as."""
        return Field(
            name=self.name,
            dtype=FEAST_TYPES[self.type],
            description=f"Declared {self.type.value} feature of {self.owner}.",
        )


def is_table_snapshot(snapshot: SnapshotInfo) -> bool:
    """True when ``snapshot`` was ingested from a declared schema (``--source table``)."""
    return "table_schema" in snapshot.metadata


def snapshot_schema(snapshot: SnapshotInfo) -> TableSchema:
    """The declared schema a ``table`` snapshot recorded in its manifest.

    Raises:
        FeatureStoreError: The snapshot records none (it is not a ``table`` snapshot).
    """
    raw = snapshot.metadata.get("table_schema")
    if raw is None:
        raise FeatureStoreError(
            f"Snapshot {snapshot.snapshot_id} (source {snapshot.source}) records no declared "
            "schema.",
            fix="ingest it with `metarec data ingest --source table --schema PATH`.",
        )
    return TableSchema.model_validate_json(raw)


def _first_length(snapshot: SnapshotInfo, table: str, column: str) -> int | None:
    """The length of the first stored vector of ``table.column`` (None when all are missing)."""
    path = snapshot.table_path(table)
    if not path.is_file():
        return None
    for value in pq.read_table(path, columns=[column]).column(column).to_pylist():
        if value is not None:
            return len(value)
    return None


def declared_features(snapshot: SnapshotInfo) -> list[DeclaredFeature]:
    """The user then item features a ``table`` snapshot declares, in declared order.

    Raises:
        FeatureStoreError: A user and an item feature share a name (the training set joins
            both into one row, so the names must differ).
    """
    schema = snapshot_schema(snapshot)
    features: list[DeclaredFeature] = []
    for owner, spec in (("users", schema.users), ("items", schema.items)):
        for name, feature in (spec.features if spec else {}).items():
            dim = feature.dim
            if feature.type is FeatureType.VECTOR and dim is None:
                dim = _first_length(snapshot, owner, name)
            features.append(
                DeclaredFeature(
                    name=name,
                    owner=owner,
                    type=feature.type,
                    nullable=feature.nullable,
                    dim=dim,
                    separator=feature.separator,
                )
            )
    names = [feature.name for feature in features]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise FeatureStoreError(
            f"Snapshot {snapshot.snapshot_id} declares {', '.join(repeated)} as both a user and "
            "an item feature; a training row holds both, so the names must differ.",
            fix="rename one in the schema YAML (keep the source column with `column:`) and "
            "ingest again.",
        )
    return features


def feature_from_field(field: Field) -> DeclaredFeature | None:
    """A user-defined Feast field as a checked feature, from its Feast type (None: unchecked)."""
    kinds: dict[str, FeatureType] = {
        "String": FeatureType.CATEGORY,
        "Int32": FeatureType.INT,
        "Int64": FeatureType.INT,
        "Float32": FeatureType.FLOAT,
        "Float64": FeatureType.FLOAT,
        "Array(Float32)": FeatureType.VECTOR,
        "Array(Float64)": FeatureType.VECTOR,
    }
    kind = kinds.get(str(field.dtype))
    if kind is None:
        return None
    return DeclaredFeature(name=field.name, owner="extra", type=kind, nullable=True)
