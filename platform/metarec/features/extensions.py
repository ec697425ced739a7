"""A team's own Feast definitions: ``feature_repo/user_features.py``, an optional hook.

The file holds ordinary Feast definitions, built by a function over the current snapshot's
sources, and names which views join MetaRec's feature services::

    from feast import FeatureView, Field
    from feast.types import Float64

    TRAINING_VIEWS = ["item_price"]   # joined to meta_training (training sets)
    ONLINE_VIEWS = ["item_price"]     # joined to online_adaptation (the service)

    def feature_views(context):
        return [
            FeatureView(
                name="item_price",
                entities=[context.item],
                schema=[Field(name="price_eur", dtype=Float64)],
                source=context.source("items"),  # the snapshot's items table
            )
        ]

``metarec features apply`` (and ``feast apply`` in ``feature_repo/``) registers the views with
MetaRec's own; without the file nothing changes.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from feast import Entity, FeatureView, FileSource

from metarec.data.tables import TIMESTAMP_FIELD
from metarec.errors import FeatureStoreError

HOOK_FILE = "user_features.py"
# The canonical attribute tables carry their validity start as ``valid_from``.
_VALIDITY_FIELD = {"users": "valid_from", "items": "valid_from"}


@dataclass(frozen=True)
class SnapshotContext:
    """What a team's ``feature_views(context)`` builds on: entities and the snapshot's sources."""

    user: Entity
    item: Entity
    interaction: Entity
    source_root: str
    snapshot_id: str = ""
    metadata: dict[str, str] = field(default_factory=dict)

    def source(self, table: str) -> FileSource:
        """A Feast file source over the snapshot's table ``table`` (``users``, ``items`` …)."""
        return FileSource(
            name=f"{table}_source",
            path=f"{self.source_root.rstrip('/')}/{table}.parquet",
            timestamp_field=_VALIDITY_FIELD.get(table, TIMESTAMP_FIELD),
        )


@dataclass(frozen=True)
class Extensions:
    """A team's views and which of them join the training and online services."""

    views: list[FeatureView] = field(default_factory=list)
    training: list[FeatureView] = field(default_factory=list)
    online: list[FeatureView] = field(default_factory=list)


def _problem(path: Path, problem: str) -> FeatureStoreError:
    return FeatureStoreError(
        f"{path}: {problem}",
        fix="see docs/your-data.md (a custom feature view) for the hook's form.",
    )


def _module(path: Path) -> Any:
    spec = importlib.util.spec_from_file_location("metarec_user_features", path)
    if spec is None or spec.loader is None:
        raise _problem(path, "cannot be imported.")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise _problem(path, f"failed to import ({type(exc).__name__}: {exc}).") from exc
    return module


def _named(views: dict[str, FeatureView], names: Any, *, key: str, path: Path) -> list[FeatureView]:
    if not isinstance(names, list | tuple) or not all(isinstance(n, str) for n in names):
        raise _problem(path, f"{key} must be a list of feature view names.")
    unknown = [name for name in names if name not in views]
    if unknown:
        raise _problem(path, f"{key} names {unknown}, which feature_views() does not return.")
    return [views[name] for name in names]


def load_extensions(repo_path: Path, context: SnapshotContext) -> Extensions:
    """The views of ``<repo_path>/user_features.py`` (none when the file does not exist).

    Raises:
        FeatureStoreError: The file fails to import, has no ``feature_views(context)``, returns
            something other than feature views, or names views it does not define.
    """
    path = Path(repo_path) / HOOK_FILE
    if not path.is_file():
        return Extensions()
    module = _module(path)
    build = getattr(module, "feature_views", None)
    if not callable(build):
        raise _problem(path, "defines no feature_views(context) function.")
    views = list(build(context))
    if not all(isinstance(view, FeatureView) for view in views):
        raise _problem(path, "feature_views(context) must return a list of Feast FeatureViews.")
    by_name = {view.name: view for view in views}
    return Extensions(
        views=views,
        training=_named(
            by_name, getattr(module, "TRAINING_VIEWS", []), key="TRAINING_VIEWS", path=path
        ),
        online=_named(by_name, getattr(module, "ONLINE_VIEWS", []), key="ONLINE_VIEWS", path=path),
    )
