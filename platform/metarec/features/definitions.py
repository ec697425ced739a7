"""The Feast objects of MetaRec: entities, sources, feature views and feature services.

They are built by a function, from the folder (or object-store prefix) holding a snapshot's
source tables, so that ``metarec features apply`` and ``feast apply`` in ``feature_repo/``
register exactly the same objects.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from feast import Entity, FeatureService, FeatureView, Field, FileSource
from feast.types import Array, FeastType, Float64, Int64, String
from feast.value_type import ValueType

from metarec.data.tables import TIMESTAMP_FIELD
from metarec.features.model_inputs import ENCODING_TAG, SEPARATOR_TAG

META_TRAINING = "meta_training"
ONLINE_ADAPTATION = "online_adaptation"
FEATURE_SERVICES = (META_TRAINING, ONLINE_ADAPTATION)
# Never expire: profiles and history rows are valid until superseded by a newer row.
NO_EXPIRY = timedelta(0)
# History aggregates are not model inputs: a user's history reaches the model as the support set.
_SKIP = {ENCODING_TAG: "skip"}


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


def file_source(root: str, name: str) -> FileSource:
    """The Feast file source of the snapshot table ``name`` under ``root``."""
    return FileSource(
        name=f"{name}_source",
        path=f"{root.rstrip('/')}/{name}.parquet",
        timestamp_field=TIMESTAMP_FIELD,
    )


def make_entity(
    name: str, key: str, description: str, *, value_type: ValueType = ValueType.INT64
) -> Entity:
    """An entity joined on ``key`` (integer ids unless ``value_type`` says otherwise)."""
    return Entity(name=name, join_keys=[key], value_type=value_type, description=description)


def feature_view(
    source_root: str,
    name: str,
    entity: Entity,
    schema: list[Field],
    *,
    description: str,
    online: bool = True,
    table: str | None = None,
) -> FeatureView:
    """A never-expiring feature view of one entity over the source table ``table or name``."""
    return FeatureView(
        name=name,
        entities=[entity],
        ttl=NO_EXPIRY,
        schema=schema,
        source=file_source(source_root, table or name),
        online=online,
        description=description,
    )


def _user_views(source_root: str, user: Entity) -> tuple[FeatureView, FeatureView, FeatureView]:
    """The user's profile, rating history statistics and recent ratings."""
    profile = feature_view(
        source_root,
        "user_profile",
        user,
        [
            Field(
                name="age",
                dtype=Int64,
                description="Age in years (MovieLens-1M: bucket start).",
                tags={ENCODING_TAG: "skip"},  # age_bucket is the model's input
            ),
            Field(name="age_bucket", dtype=String, description="MovieLens-1M age bucket."),
            Field(name="gender", dtype=String, description="M or F."),
            Field(name="occupation", dtype=String),
            Field(name="zip_prefix", dtype=String, description="First three zip characters."),
        ],
        description="Demographic profile of a user, versioned by validity start.",
    )
    return (profile, *rating_views(source_root, user))


def rating_views(
    source_root: str, user: Entity, *, item_id_type: FeastType = Int64
) -> tuple[FeatureView, FeatureView]:
    """The user's rating history statistics and recent ratings (snapshots with ratings).

    Args:
        source_root: Folder or object-store prefix of the snapshot.
        user: The user entity.
        item_id_type: The type of the item ids (``String`` for a team's text ids).
    """
    history = feature_view(
        source_root,
        "user_history",
        user,
        [
            Field(
                name="rating_count",
                dtype=Int64,
                description="Ratings strictly before now.",
                tags=_SKIP,
            ),
            Field(
                name="rating_mean",
                dtype=Float64,
                description="Their mean (0 when none).",
                tags=_SKIP,
            ),
            Field(
                name="rating_std", dtype=Float64, description="Their std (0 when none).", tags=_SKIP
            ),
        ],
        description="Point-in-time statistics of the user's earlier ratings.",
    )
    return history, recent_ratings_view(source_root, user, item_id_type=item_id_type)


def recent_ratings_view(
    source_root: str, user: Entity, *, item_id_type: FeastType = Int64
) -> FeatureView:
    """The user's most recent ratings (for implicit events: liked items, each rated 5).

    The service's default support set for a known user (online only).
    """
    return feature_view(
        source_root,
        "user_recent_ratings",
        user,
        [
            Field(name="recent_item_ids", dtype=Array(item_id_type), description="Newest first."),
            Field(name="recent_ratings", dtype=Array(Int64), description="Aligned with ids."),
        ],
        description="The user's most recent ratings: the default support set when serving.",
    )


def _item_view(source_root: str, item: Entity) -> FeatureView:
    return feature_view(
        source_root,
        "item_profile",
        item,
        [
            Field(name="title", dtype=String),
            Field(name="release_year", dtype=Int64, tags={ENCODING_TAG: "bucket:5"}),
            Field(
                name="genres",
                dtype=String,
                description="'|'-separated genre names.",
                tags={ENCODING_TAG: "bag", SEPARATOR_TAG: "|"},
            ),
        ],
        description="Item attributes: genres and release year.",
    )


def label_view(source_root: str, interaction: Entity, *, dtype: FeastType = Int64) -> FeatureView:
    """The offline-only label view over ``interaction_label`` (the rating)."""
    return feature_view(
        source_root,
        "interaction_label",
        interaction,
        [Field(name="rating", dtype=dtype, description="The observed rating (label).")],
        online=False,
        description="Training labels. Listed first in meta_training so that Feast's point-in-time "
        "join keeps one row per interaction (a user can rate two items in the same second).",
    )


def build_definitions(
    source_root: str,
    *,
    snapshot_id: str = "",
    extra_training: Sequence[FeatureView] = (),
    extra_online: Sequence[FeatureView] = (),
) -> FeatureDefinitions:
    """Build the Feast objects over the source tables under ``source_root``.

    Args:
        source_root: Folder or object-store prefix of a snapshot (``<root>/<table>.parquet``).
        snapshot_id: Recorded as a tag on the feature services, for lineage.
        extra_training: A team's views joined to ``meta_training`` after MetaRec's own.
        extra_online: A team's views joined to ``online_adaptation`` after MetaRec's own.

    Returns:
        The definitions.
    """
    user = make_entity(
        "user", "user_id", "A person who rates items; each user is one meta-learning task."
    )
    item = make_entity("item", "item_id", "A rated item (a movie).")
    interaction = make_entity(
        "interaction", "interaction_id", "One rating event (user, item, time)."
    )
    interaction_label = label_view(source_root, interaction)
    user_profile, user_history, user_recent_ratings = _user_views(source_root, user)
    item_profile = _item_view(source_root, item)
    tags = {"snapshot_id": snapshot_id} if snapshot_id else {}
    meta_training = FeatureService(
        name=META_TRAINING,
        features=[
            interaction_label,
            user_profile[["gender", "age_bucket", "occupation", "zip_prefix", "age"]],
            item_profile[["release_year", "genres"]],
            user_history,
            *extra_training,
        ],
        tags=tags,
        description="Features joined to every rating for meta-training and evaluation.",
    )
    online_adaptation = FeatureService(
        name=ONLINE_ADAPTATION,
        features=[user_profile, item_profile, user_history, user_recent_ratings, *extra_online],
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
