"""The Feast objects of MetaRec: entities, sources, feature views and feature services.

They are built by a function, from the folder (or object-store prefix) holding a snapshot's
source tables, so that ``metarec features apply`` and ``feast apply`` in ``feature_repo/``
register exactly the same objects.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from feast import Entity, FeatureService, FeatureView, Field, FileSource
from feast.types import Array, Float64, Int64, String
from feast.value_type import ValueType

from metarec.data.tables import TIMESTAMP_FIELD

META_TRAINING = "meta_training"
ONLINE_ADAPTATION = "online_adaptation"
FEATURE_SERVICES = (META_TRAINING, ONLINE_ADAPTATION)
# Never expire: profiles and history rows are valid until superseded by a newer row.
NO_EXPIRY = timedelta(0)


@dataclass(frozen=True)
class FeatureDefinitions:
    """Every Feast object MetaRec registers."""

    user: Entity
    item: Entity
    interaction: Entity
    interaction_label: FeatureView
    user_profile: FeatureView
    item_profile: FeatureView
    user_history: FeatureView
    user_recent_ratings: FeatureView
    meta_training: FeatureService
    online_adaptation: FeatureService

    def objects(self) -> list[Entity | FeatureView | FeatureService]:
        """All objects, in the order Feast applies them."""
        return [
            self.user,
            self.item,
            self.interaction,
            self.interaction_label,
            self.user_profile,
            self.item_profile,
            self.user_history,
            self.user_recent_ratings,
            self.meta_training,
            self.online_adaptation,
        ]


def _source(root: str, name: str) -> FileSource:
    return FileSource(
        name=f"{name}_source",
        path=f"{root.rstrip('/')}/{name}.parquet",
        timestamp_field=TIMESTAMP_FIELD,
    )


def build_definitions(source_root: str, *, snapshot_id: str = "") -> FeatureDefinitions:
    """Build the Feast objects over the source tables under ``source_root``.

    Args:
        source_root: Folder or object-store prefix of a snapshot (``<root>/<table>.parquet``).
        snapshot_id: Recorded as a tag on the feature services, for lineage.

    Returns:
        The definitions.
    """
    user = Entity(
        name="user",
        join_keys=["user_id"],
        value_type=ValueType.INT64,
        description="A person who rates items; each user is one meta-learning task.",
    )
    item = Entity(
        name="item",
        join_keys=["item_id"],
        value_type=ValueType.INT64,
        description="A rated item (a movie).",
    )
    interaction = Entity(
        name="interaction",
        join_keys=["interaction_id"],
        value_type=ValueType.INT64,
        description="One rating event (user, item, time).",
    )
    interaction_label = FeatureView(
        name="interaction_label",
        entities=[interaction],
        ttl=NO_EXPIRY,
        schema=[Field(name="rating", dtype=Int64, description="The observed rating (label).")],
        source=_source(source_root, "interaction_label"),
        online=False,
        description="Training labels. Listed first in meta_training so that Feast's point-in-time "
        "join keeps one row per interaction (a user can rate two items in the same second).",
    )
    user_profile = FeatureView(
        name="user_profile",
        entities=[user],
        ttl=NO_EXPIRY,
        schema=[
            Field(
                name="age", dtype=Int64, description="Age in years (MovieLens-1M: bucket start)."
            ),
            Field(name="age_bucket", dtype=String, description="MovieLens-1M age bucket."),
            Field(name="gender", dtype=String, description="M or F."),
            Field(name="occupation", dtype=String),
            Field(name="zip_prefix", dtype=String, description="First three zip characters."),
        ],
        source=_source(source_root, "user_profile"),
        online=True,
        description="Demographic profile of a user, versioned by validity start.",
    )
    item_profile = FeatureView(
        name="item_profile",
        entities=[item],
        ttl=NO_EXPIRY,
        schema=[
            Field(name="title", dtype=String),
            Field(name="release_year", dtype=Int64),
            Field(name="genres", dtype=String, description="'|'-separated genre names."),
        ],
        source=_source(source_root, "item_profile"),
        online=True,
        description="Item attributes: genres and release year.",
    )
    user_history = FeatureView(
        name="user_history",
        entities=[user],
        ttl=NO_EXPIRY,
        schema=[
            Field(name="rating_count", dtype=Int64, description="Ratings strictly before now."),
            Field(name="rating_mean", dtype=Float64, description="Their mean (0 when none)."),
            Field(name="rating_std", dtype=Float64, description="Their std (0 when none)."),
        ],
        source=_source(source_root, "user_history"),
        online=True,
        description="Point-in-time statistics of the user's earlier ratings.",
    )
    user_recent_ratings = FeatureView(
        name="user_recent_ratings",
        entities=[user],
        ttl=NO_EXPIRY,
        schema=[
            Field(name="recent_item_ids", dtype=Array(Int64), description="Newest first."),
            Field(name="recent_ratings", dtype=Array(Int64), description="Aligned with ids."),
        ],
        source=_source(source_root, "user_recent_ratings"),
        online=True,
        description="The user's most recent ratings: the default support set when serving.",
    )
    tags = {"snapshot_id": snapshot_id} if snapshot_id else {}
    meta_training = FeatureService(
        name=META_TRAINING,
        features=[
            interaction_label,
            user_profile[["age", "age_bucket", "gender", "occupation", "zip_prefix"]],
            item_profile[["release_year", "genres"]],
            user_history,
        ],
        tags=tags,
        description="Features joined to every rating for meta-training and evaluation.",
    )
    online_adaptation = FeatureService(
        name=ONLINE_ADAPTATION,
        features=[user_profile, item_profile, user_history, user_recent_ratings],
        tags=tags,
        description="Features the adaptation service reads from the online store.",
    )
    return FeatureDefinitions(
        user=user,
        item=item,
        interaction=interaction,
        interaction_label=interaction_label,
        user_profile=user_profile,
        item_profile=item_profile,
        user_history=user_history,
        user_recent_ratings=user_recent_ratings,
        meta_training=meta_training,
        online_adaptation=online_adaptation,
    )
