"""Open the Feast feature store from MetaRec settings; apply, materialise and read online.

The ``feature_store.yaml`` files in ``feature_repo/`` use ``${VAR}`` placeholders (the same
syntax Feast expands); MetaRec fills them from its settings, so one file serves every home.

With ``feast.offline_root`` set, the sources are the snapshot's tables published there
(``s3://…/<snapshot id>/<table>.parquet``). Feast's file offline store reads them through
pyarrow's ``S3FileSystem`` when materialising, which ignores ``AWS_ENDPOINT_URL``; each ``s3://``
source therefore carries the pod's S3 endpoint as ``s3_endpoint_override`` (kept in the registry).
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
from feast import FeatureStore, FileSource, RepoConfig

from metarec.clock import utc_now
from metarec.config import Settings
from metarec.data.movielens_schema import require_movielens_columns
from metarec.data.snapshots import SnapshotInfo
from metarec.errors import EntityNotFoundError, FeatureStoreError
from metarec.features.catalog import SnapshotObjects, snapshot_objects, stale_views
from metarec.features.declared import is_table_snapshot
from metarec.features.definitions import FEATURE_SERVICES, ONLINE_ADAPTATION

_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
EntityId = int | str


def feature_store_yaml(settings: Settings) -> Path:
    """The ``feature_store.yaml`` of the active environment (``feast.environment``).

    ``local`` is the repository's own; every other one (``cluster``, ``local-ray``,
    ``cluster-ray``) is the file in the folder of that name.
    """
    repo = settings.feast.repo_path
    if settings.feast.environment == "local":
        return repo / "feature_store.yaml"
    return repo / settings.feast.environment / "feature_store.yaml"


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


def s3_endpoint(environ: Mapping[str, str] | None = None) -> str:
    """This pod's S3 endpoint: ``AWS_ENDPOINT_URL_S3``, else ``AWS_ENDPOINT_URL``, else "" (AWS)."""
    env = os.environ if environ is None else environ
    return env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or ""


def with_s3_endpoint(objects: SnapshotObjects, endpoint: str) -> SnapshotObjects:
    """Point every ``s3://`` file source of ``objects`` without an endpoint at ``endpoint``.

    Feast's file offline store passes a source's ``s3_endpoint_override`` to pyarrow (materialise)
    and to s3fs (historical retrieval); without it pyarrow asks AWS itself.
    """
    if endpoint:
        for view in objects.views:
            source = view.batch_source
            if (
                isinstance(source, FileSource)
                and source.path.startswith("s3://")
                and not source.file_options.s3_endpoint_override
            ):
                source.file_options.s3_endpoint_override = endpoint
    return objects


def snapshot_definitions(settings: Settings, snapshot: SnapshotInfo) -> SnapshotObjects:
    """The Feast objects over ``snapshot``: MetaRec's own, its declared features, the team's.

    Raises:
        FeatureStoreError: A MovieLens-type snapshot lacks the MovieLens columns, or the
            team's ``feature_repo/user_features.py`` is invalid.
    """
    if not is_table_snapshot(snapshot):
        require_movielens_columns(snapshot)
    objects = snapshot_objects(
        snapshot, source_root=source_root(settings, snapshot), repo_path=settings.feast.repo_path
    )
    return with_s3_endpoint(objects, s3_endpoint())


def apply_features(settings: Settings, snapshot: SnapshotInfo) -> list[str]:
    """Register the Feast objects over ``snapshot`` (like ``feast apply``).

    MetaRec's views that an earlier snapshot registered and this one does not define (say, the
    rating history after an event snapshot) are removed.

    Returns:
        Names of the objects applied.

    Raises:
        FeatureStoreError: See :func:`snapshot_definitions`.
    """
    current = snapshot_definitions(settings, snapshot)
    store = open_store(settings)
    stale = stale_views(store.list_feature_views(), current)
    objects = current.objects()
    store.apply(objects, objects_to_delete=list(stale), partial=not stale)
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


def _online_refs(store: FeatureStore) -> dict[str, list[str]]:
    """Join key → ``view:feature`` references of the online service's views keyed by it alone."""
    refs: dict[str, list[str]] = {}
    service = store.get_feature_service(ONLINE_ADAPTATION)
    for projection in service.feature_view_projections:
        keys = store.get_feature_view(projection.name).join_keys
        if len(keys) == 1:
            names = [f"{projection.name}:{field.name}" for field in projection.features]
            refs.setdefault(keys[0], []).extend(names)
    return refs


def _typed_id(store: FeatureStore, entity: str, value: EntityId) -> EntityId:
    """``value`` as the entity's key type: text from the command line becomes an int for INT64."""
    from feast import ValueType

    if not isinstance(value, str) or store.get_entity(entity).value_type is not ValueType.INT64:
        return value
    try:
        return int(value)
    except ValueError:
        raise EntityNotFoundError(
            f"{entity} id {value!r} is not an integer, and this snapshot's {entity} ids are.",
            fix=f"pass the {entity}'s integer id.",
        ) from None


def online_features(
    store: FeatureStore, *, user_id: EntityId | None = None, item_id: EntityId | None = None
) -> dict[str, Any]:
    """Read one user's and/or one item's features (those of the online service) online.

    Raises:
        EntityNotFoundError: The id has no features online.
        FeatureStoreError: Nothing has been applied.
    """
    applied_snapshot_id(store)
    refs = _online_refs(store)
    result: dict[str, Any] = {}
    lookups = []
    if user_id is not None:
        lookups.append(("user", "user_id", user_id))
    if item_id is not None:
        lookups.append(("item", "item_id", item_id))
    for entity, key, raw in lookups:
        value = _typed_id(store, entity, raw)
        features = refs.get(key, [])
        values: dict[str, Any] = {}
        if features:
            row = store.get_online_features(features=features, entity_rows=[{key: value}])
            values = {name: column[0] for name, column in row.to_dict().items() if name != key}
        if all(v is None for v in values.values()):
            raise EntityNotFoundError(
                f"{entity} {value} has no features in the online store.",
                fix=f"check that {entity} {value} exists in the ingested data, then run "
                "`metarec features apply` and `metarec features materialize`.",
            )
        result.update({key: value, **values})
    return result
