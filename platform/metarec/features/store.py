"""Open the Feast feature store from MetaRec settings; apply, materialise and read online.

The ``feature_store.yaml`` files in ``feature_repo/`` use ``${VAR}`` placeholders (the same
syntax Feast expands); MetaRec fills them from its settings, so one file serves every home.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from feast import FeatureStore, RepoConfig

from metarec.clock import utc_now
from metarec.config import Settings
from metarec.data.movielens_schema import require_movielens_columns
from metarec.data.snapshots import SnapshotInfo
from metarec.errors import EntityNotFoundError, FeatureStoreError
from metarec.features.definitions import FEATURE_SERVICES, build_definitions

_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
USER_VIEWS = ("user_profile", "user_history", "user_recent_ratings")
ITEM_VIEWS = ("item_profile",)


def feature_store_yaml(settings: Settings) -> Path:
    """The ``feature_store.yaml`` of the active environment (``local`` or ``cluster``)."""
    repo = settings.feast.repo_path
    if settings.feast.environment == "local":
        return repo / "feature_store.yaml"
    return repo / "cluster" / "feature_store.yaml"


def feast_variables(settings: Settings) -> dict[str, str]:
    """Values of the ``${VAR}`` placeholders in the feature_store.yaml files."""
    return {
        "METAREC_FEAST_DIR": str(settings.paths.feast),
        "METAREC_FEAST_PROJECT": settings.feast.project,
        "METAREC_FEAST_REDIS": settings.feast.redis_connection_string,
        "METAREC_FEAST_REGISTRY_URL": settings.feast.registry_url,
    }


def expand_placeholders(text: str, variables: Mapping[str, str]) -> str:
    """Replace ``${NAME}`` with ``variables[NAME]``, else the process environment.

    Raises:
        FeatureStoreError: A placeholder has no value.
    """

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in variables:
            return variables[name]
        if name in os.environ:
            return os.environ[name]
        raise FeatureStoreError(
            f"feature_store.yaml uses ${{{name}}}, which has no value.",
            fix=f"export {name}, or remove the placeholder.",
        )

    return _PLACEHOLDER.sub(value, text)


def repo_config(settings: Settings) -> RepoConfig:
    """Build Feast's ``RepoConfig`` for the active environment.

    Raises:
        FeatureStoreError: The file is missing or invalid.
    """
    path = feature_store_yaml(settings)
    if not path.is_file():
        raise FeatureStoreError(
            f"Feast configuration {path} not found.",
            fix="set METAREC_FEAST__REPO_PATH to the feature_repo folder of a MetaRec checkout.",
        )
    raw: dict[str, Any] = yaml.safe_load(
        expand_placeholders(path.read_text(), feast_variables(settings))
    )
    try:
        config = RepoConfig(**raw)
    except Exception as exc:
        raise FeatureStoreError(
            f"{path} is not a valid Feast configuration ({exc}).",
            fix="compare it with feature_repo/feature_store.yaml.",
        ) from exc
    config.repo_path = settings.feast.repo_path
    return config


def open_store(settings: Settings) -> FeatureStore:
    """Open the feature store (creating the embedded folders it needs)."""
    settings.paths.feast.mkdir(parents=True, exist_ok=True)
    logging.getLogger("feast").setLevel(logging.WARNING)
    return FeatureStore(repo_path=str(settings.feast.repo_path), config=repo_config(settings))


def source_root(settings: Settings, snapshot: SnapshotInfo) -> str:
    """Where the Feast sources of ``snapshot`` live: its folder, or the cluster offline root."""
    if settings.feast.offline_root:
        return f"{settings.feast.offline_root.rstrip('/')}/{snapshot.snapshot_id}"
    return str(snapshot.path)


def apply_features(settings: Settings, snapshot: SnapshotInfo) -> list[str]:
    """Register MetaRec's Feast objects over ``snapshot`` (like ``feast apply``).

    Returns:
        Names of the objects applied.

    Raises:
        FeatureStoreError: The snapshot lacks the MovieLens columns the definitions read.
    """
    require_movielens_columns(snapshot)
    store = open_store(settings)
    definitions = build_definitions(
        source_root(settings, snapshot), snapshot_id=snapshot.snapshot_id
    )
    objects = definitions.objects()
    store.apply(objects)
    return [obj.name for obj in objects]


def applied_snapshot_id(store: FeatureStore) -> str:
    """The snapshot the applied feature services point at.

    Raises:
        FeatureStoreError: Nothing has been applied.
    """
    try:
        service = store.get_feature_service(FEATURE_SERVICES[0])
    except Exception as exc:
        raise FeatureStoreError(
            "No MetaRec feature services are registered in Feast.",
            fix="run `metarec features apply` first.",
        ) from exc
    return service.tags.get("snapshot_id", "")


def materialize_features(settings: Settings, *, end: datetime | None = None) -> datetime:
    """Load the latest feature values up to ``end`` (default: now) into the online store.

    Returns:
        The end of the materialised window.
    """
    store = open_store(settings)
    applied_snapshot_id(store)
    end = end or utc_now()
    # Feast prints a styled line per feature view to stdout; callers show their own progress.
    with contextlib.redirect_stdout(io.StringIO()):
        store.materialize(start_date=EPOCH, end_date=end)
    return end


def online_features(
    store: FeatureStore, *, user_id: int | None = None, item_id: int | None = None
) -> dict[str, Any]:
    """Read one user's and/or one item's features from the online store.

    Raises:
        EntityNotFoundError: The id has no features online.
    """
    result: dict[str, Any] = {}
    lookups = []
    if user_id is not None:
        lookups.append(("user", "user_id", user_id, USER_VIEWS))
    if item_id is not None:
        lookups.append(("item", "item_id", item_id, ITEM_VIEWS))
    for entity, key, value, views in lookups:
        refs = [
            f"{view.name}:{field.name}"
            for view in store.list_feature_views()
            if view.name in views
            for field in view.features
        ]
        row = store.get_online_features(features=refs, entity_rows=[{key: value}]).to_dict()
        values = {name: column[0] for name, column in row.items() if name != key}
        if not refs or all(v is None for v in values.values()):
            raise EntityNotFoundError(
                f"{entity} {value} has no features in the online store.",
                fix=f"check that {entity} {value} exists in the ingested data, then run "
                "`metarec features apply` and `metarec features materialize`.",
            )
        result.update({key: value, **values})
    return result
