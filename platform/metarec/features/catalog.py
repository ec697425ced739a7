"""Every Feast object MetaRec registers over a snapshot, MovieLens or a team's own tables.

- MovieLens (and synthetic) snapshots: :func:`metarec.features.definitions.build_definitions`,
  unchanged.
- ``table`` snapshots: the declared features as ``user_profile`` / ``item_profile``
  (:mod:`metarec.features.table_definitions`).
- Either way, a team's ``feature_repo/user_features.py`` views
  (:mod:`metarec.features.extensions`) are registered too, and the ones it names join the
  feature services.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from feast import Entity, FeatureService, FeatureView

from metarec.data.snapshots import SnapshotInfo
from metarec.errors import FeatureStoreError
from metarec.features.declared import is_table_snapshot
from metarec.features.definitions import (
    META_TRAINING,
    ONLINE_ADAPTATION,
    build_definitions,
)
from metarec.features.extensions import SnapshotContext, load_extensions
from metarec.features.table_definitions import INTERACTION_EVENT, snapshot_context, table_views

# Views MetaRec itself may register; one the current snapshot does not define is removed.
MANAGED_VIEWS = frozenset(
    {
        "interaction_label",
        INTERACTION_EVENT,
        "user_profile",
        "item_profile",
        "user_history",
        "user_recent_ratings",
    }
)
FeastObject = Entity | FeatureView | FeatureService


@dataclass(frozen=True)
class SnapshotObjects:
    """The objects to register, in the order Feast applies them, by kind."""

    entities: list[Entity]
    views: list[FeatureView]
    services: list[FeatureService]

    def objects(self) -> list[FeastObject]:
        """Entities, then views, then services."""
        return [*self.entities, *self.views, *self.services]


def snapshot_objects(
    snapshot: SnapshotInfo, *, source_root: str, repo_path: Path
) -> SnapshotObjects:
    """The Feast objects over ``snapshot`` (its sources under ``source_root``).

    Args:
        snapshot: The snapshot to register.
        source_root: Where its source tables are (folder or object-store prefix).
        repo_path: The ``feature_repo`` folder, which may hold ``user_features.py``.

    Raises:
        FeatureStoreError: The team's hook is invalid, or declared names collide.
    """
    if is_table_snapshot(snapshot):
        objects = _table_objects(snapshot, source_root=source_root, repo_path=repo_path)
    else:
        objects = _movielens_objects(snapshot, source_root=source_root, repo_path=repo_path)
    require_unique_features(objects.services)
    return objects


def _movielens_objects(
    snapshot: SnapshotInfo, *, source_root: str, repo_path: Path
) -> SnapshotObjects:
    base = build_definitions(source_root, snapshot_id=snapshot.snapshot_id)
    context = SnapshotContext(
        user=base.user,
        item=base.item,
        interaction=base.interaction,
        source_root=source_root,
        snapshot_id=snapshot.snapshot_id,
        metadata=dict(snapshot.metadata),
    )
    extensions = load_extensions(repo_path, context)
    if not extensions.views:
        objects = base.objects()
        return SnapshotObjects(
            entities=[base.user, base.item, base.interaction],
            views=[obj for obj in objects if isinstance(obj, FeatureView)],
            services=[base.meta_training, base.online_adaptation],
        )
    full = build_definitions(
        source_root,
        snapshot_id=snapshot.snapshot_id,
        extra_training=extensions.training,
        extra_online=extensions.online,
    )
    views = [obj for obj in full.objects() if isinstance(obj, FeatureView)]
    return SnapshotObjects(
        entities=[full.user, full.item, full.interaction],
        views=[*views, *extensions.views],
        services=[full.meta_training, full.online_adaptation],
    )


def _table_objects(snapshot: SnapshotInfo, *, source_root: str, repo_path: Path) -> SnapshotObjects:
    context = snapshot_context(snapshot, source_root)
    label, training, online = table_views(context, snapshot)
    extensions = load_extensions(repo_path, context)
    tags = {"snapshot_id": snapshot.snapshot_id}
    meta_training = FeatureService(
        name=META_TRAINING,
        features=[label, *training, *extensions.training],
        tags=tags,
        description="The label and the declared features joined to every interaction.",
    )
    online_adaptation = FeatureService(
        name=ONLINE_ADAPTATION,
        features=[*online, *extensions.online],
        tags=tags,
        description="Declared features the adaptation service reads from the online store.",
    )
    views = [label, *{view.name: view for view in online + training}.values()]
    return SnapshotObjects(
        entities=[context.user, context.item, context.interaction],
        views=[*views, *extensions.views],
        services=[meta_training, online_adaptation],
    )


def require_unique_features(services: list[FeatureService]) -> None:
    """Refuse a service that joins two features of the same name (one training-set column).

    Raises:
        FeatureStoreError: Names the feature, the views and the fix.
    """
    for service in services:
        owners: dict[str, list[str]] = {}
        for projection in service.feature_view_projections:
            for field in projection.features:
                owners.setdefault(field.name, []).append(projection.name)
        clashes = {name: views for name, views in owners.items() if len(views) > 1}
        if clashes:
            name, views = next(iter(clashes.items()))
            raise FeatureStoreError(
                f"Feature service {service.name!r} would join feature {name!r} from "
                f"{' and '.join(views)}; each feature must have one name in a training row.",
                fix="rename the field of your own view in feature_repo/user_features.py, or "
                f"leave {name!r} out of TRAINING_VIEWS / ONLINE_VIEWS.",
            )


def stale_views(registered: list[FeatureView], current: SnapshotObjects) -> list[FeatureView]:
    """MetaRec's views registered for an earlier snapshot that the current one does not define."""
    names = {view.name for view in current.views}
    return [view for view in registered if view.name in MANAGED_VIEWS and view.name not in names]
