"""MovieLens (and the synthetic generator) as an instance of the generic table schema.

The MovieLens readers parse their archive's files into tables with these columns and hand them to
the same validator/normaliser as a team's own tables (:func:`normalise_frames`). MetaRec's
MovieLens Feast definitions read these columns, so :func:`require_movielens_columns` refuses a
MovieLens-type snapshot without them (``table`` snapshots get definitions from their declared
features instead: :mod:`metarec.features.table_definitions`).
"""

from __future__ import annotations

import pandas as pd
import pyarrow.parquet as pq

from metarec.data.snapshots import SnapshotInfo
from metarec.data.table_normalise import RawTables, normalise_tables
from metarec.data.table_schema import (
    AttributeTableSpec,
    FeatureSpec,
    FeatureType,
    InteractionsSpec,
    RatingLabel,
    TableSchema,
)
from metarec.errors import FeatureStoreError

BUILTIN = "(built-in)"


def movielens_schema(*, with_interaction_id: bool = False) -> TableSchema:
    """The MovieLens schema: 1-5 star ratings, user demographics, item title, year and genres."""
    return TableSchema(
        interactions=InteractionsSpec(
            path=BUILTIN,
            timestamp="event_timestamp",
            interaction_id="interaction_id" if with_interaction_id else None,
            label=RatingLabel(kind="rating", column="rating", scale=(1, 5)),
        ),
        users=AttributeTableSpec(
            path=BUILTIN,
            key="user_id",
            valid_from="valid_from",
            features={
                "age": FeatureSpec(type=FeatureType.INT),
                "age_bucket": FeatureSpec(type=FeatureType.CATEGORY),
                "gender": FeatureSpec(type=FeatureType.CATEGORY),
                "occupation": FeatureSpec(type=FeatureType.CATEGORY),
                "zip_prefix": FeatureSpec(type=FeatureType.CATEGORY),
            },
        ),
        items=AttributeTableSpec(
            path=BUILTIN,
            key="item_id",
            valid_from="valid_from",
            features={
                "title": FeatureSpec(type=FeatureType.CATEGORY),
                "release_year": FeatureSpec(type=FeatureType.INT, nullable=True),
                "genres": FeatureSpec(type=FeatureType.CATEGORY_LIST, separator="|"),
            },
        ),
    )


def _columns(spec: AttributeTableSpec, key: str) -> tuple[str, ...]:
    return (key, *spec.features, "valid_from")


_SCHEMA = movielens_schema()
assert _SCHEMA.users is not None and _SCHEMA.items is not None
USER_COLUMNS = _columns(_SCHEMA.users, "user_id")
ITEM_COLUMNS = _columns(_SCHEMA.items, "item_id")
INTERACTION_COLUMNS = ("interaction_id", "user_id", "item_id", "rating", "event_timestamp")


def normalise_frames(
    users: pd.DataFrame,
    items: pd.DataFrame,
    interactions: pd.DataFrame,
    *,
    labels: dict[str, str] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Validate and normalise MovieLens-shaped tables through the generic table path.

    Args:
        users: Users with at least :data:`USER_COLUMNS`.
        items: Items with at least :data:`ITEM_COLUMNS`.
        interactions: Interactions with ``user_id``, ``item_id``, ``rating``, ``event_timestamp``
            (an ``interaction_id`` is assigned in time order when missing).
        labels: Table name → the file errors name (default: the table's name).

    Returns:
        The three tables, with canonical columns only.

    Raises:
        TableFormatError: A table does not match the MovieLens schema.
    """
    schema = movielens_schema(with_interaction_id="interaction_id" in interactions.columns)
    raw = RawTables(interactions=interactions, users=users, items=items, labels=labels or {})
    return normalise_tables(raw, schema)


def missing_movielens_columns(snapshot: SnapshotInfo) -> list[str]:
    """``table.column`` names MetaRec's Feast definitions need that ``snapshot`` lacks."""
    expected = {"users": USER_COLUMNS, "items": ITEM_COLUMNS, "interactions": INTERACTION_COLUMNS}
    missing: list[str] = []
    for table, columns in expected.items():
        path = snapshot.table_path(table)
        if not path.is_file():
            continue  # not a columns question: reading the table reports it
        present = set(pq.read_schema(path).names)
        missing.extend(f"{table}.{column}" for column in columns if column not in present)
    return missing


def require_movielens_columns(snapshot: SnapshotInfo) -> None:
    """Refuse a MovieLens-type snapshot that lacks the columns its Feast definitions read.

    ``table`` snapshots are not checked here: their declared features are registered instead.

    Raises:
        FeatureStoreError: It lacks MovieLens columns; the message names them.
    """
    missing = missing_movielens_columns(snapshot)
    if not missing:
        return
    raise FeatureStoreError(
        f"Snapshot {snapshot.snapshot_id} (source {snapshot.source}) lacks the MovieLens columns "
        f"MetaRec's MovieLens feature definitions read: {', '.join(missing)}.",
        fix="ingest the data again (metarec data ingest --source ml-100k|ml-1m|synthetic), or "
        "ingest a team's own tables with --source table --schema PATH, whose declared features "
        "are registered instead.",
    )
