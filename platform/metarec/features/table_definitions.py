"""Feast objects over a ``table`` snapshot: its declared features, by user and by item.

The declared user features form ``user_profile`` (keyed by user), the item features
``item_profile`` (keyed by item), each over the snapshot's profile table, typed from the declared
types (:data:`metarec.features.declared.FEAST_TYPES`). The label view comes first in
``meta_training`` (one row per interaction, see docs/features.md): ``interaction_label`` (the
rating) for rating snapshots, ``interaction_event`` (``label``, ``weight``, ``event_type``) over
the interactions table for event snapshots. Rating snapshots also get MetaRec's rating history
views, as MovieLens does.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
from feast import Entity, FeatureView, Field
from feast.types import Float64, Int64, String
from feast.value_type import ValueType

from metarec.data.snapshots import SnapshotInfo
from metarec.features.declared import DeclaredFeature, declared_features
from metarec.features.definitions import (
    feature_view,
    label_view,
    make_entity,
    rating_views,
    recent_ratings_view,
)
from metarec.features.extensions import SnapshotContext

INTERACTION_EVENT = "interaction_event"


def _id_type(snapshot: SnapshotInfo, table: str, key: str) -> ValueType:
    """STRING when the snapshot stores ``table.key`` as text, else INT64."""
    path = snapshot.table_path(table)
    if path.is_file() and pa.types.is_string(pq.read_schema(path).field(key).type):
        return ValueType.STRING
    if path.is_file() and pa.types.is_large_string(pq.read_schema(path).field(key).type):
        return ValueType.STRING
    return ValueType.INT64


def snapshot_context(snapshot: SnapshotInfo, source_root: str) -> SnapshotContext:
    """The entities (typed like the snapshot's ids) and sources of a ``table`` snapshot."""
    return SnapshotContext(
        user=make_entity(
            "user",
            "user_id",
            "A user of the team's catalogue.",
            value_type=_id_type(snapshot, "users", "user_id"),
        ),
        item=make_entity(
            "item",
            "item_id",
            "An item of the team's catalogue.",
            value_type=_id_type(snapshot, "items", "item_id"),
        ),
        interaction=make_entity(
            "interaction", "interaction_id", "One interaction (user, item, time)."
        ),
        source_root=source_root,
        snapshot_id=snapshot.snapshot_id,
        metadata=dict(snapshot.metadata),
    )


def _profile_view(
    context: SnapshotContext, name: str, entity: Entity, features: list[DeclaredFeature]
) -> FeatureView | None:
    if not features:
        return None
    return feature_view(
        context.source_root,
        name,
        entity,
        [feature.field() for feature in features],
        description=f"Declared {entity.name} features of the team's schema, by validity start.",
    )


def _event_view(context: SnapshotContext, snapshot: SnapshotInfo) -> FeatureView:
    """The implicit-event label over the interactions table (offline only)."""
    columns = set(pq.read_schema(snapshot.table_path("interactions")).names)
    schema = [
        Field(name="label", dtype=Int64, description="1 for a positive event, else 0."),
        Field(name="weight", dtype=Float64, description="The event's weight."),
    ]
    if "event_type" in columns:
        schema.append(Field(name="event_type", dtype=String, description="The event's type."))
    return feature_view(
        context.source_root,
        INTERACTION_EVENT,
        context.interaction,
        schema,
        online=False,
        table="interactions",
        description="Training labels of implicit events. First in meta_training so that Feast "
        "keeps one row per interaction.",
    )


def _label_view(context: SnapshotContext, snapshot: SnapshotInfo) -> FeatureView:
    if snapshot.metadata.get("label_kind") != "rating":
        return _event_view(context, snapshot)
    rating = pq.read_schema(snapshot.table_path("interactions")).field("rating").type
    dtype = Int64 if pa.types.is_integer(rating) else Float64
    return label_view(context.source_root, context.interaction, dtype=dtype)


def table_views(
    context: SnapshotContext, snapshot: SnapshotInfo
) -> tuple[FeatureView, list[FeatureView], list[FeatureView]]:
    """The label view, the views for training, and the views for the online service.

    Returns:
        ``(label, training views after the label, online views)``.
    """
    features = declared_features(snapshot)
    profiles = [
        _profile_view(context, "user_profile", context.user, _owned(features, "users")),
        _profile_view(context, "item_profile", context.item, _owned(features, "items")),
    ]
    training = [view for view in profiles if view is not None]
    online = list(training)
    text_items = _id_type(snapshot, "interactions", "item_id") is ValueType.STRING
    item_id_type = String if text_items else Int64
    if snapshot.metadata.get("label_kind") == "rating":
        history, recent = rating_views(context.source_root, context.user, item_id_type=item_id_type)
        training.append(history)
        online += [history, recent]
    else:  # implicit events: a known user's recent liked items, for serving
        online.append(
            recent_ratings_view(context.source_root, context.user, item_id_type=item_id_type)
        )
    return _label_view(context, snapshot), training, online


def _owned(features: list[DeclaredFeature], owner: str) -> list[DeclaredFeature]:
    return [feature for feature in features if feature.owner == owner]
