"""Registered versions as BentoML models, so ``bentoml models list`` shows them.

The BentoML model store is passed explicitly (``<BENTOML_HOME>/models``), never taken from
BentoML's global container, so tests and several homes do not interfere. BentoML is imported
lazily: it is slow to import and only needed here.
"""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path
from typing import Any

from metarec.errors import RegistryError
from metarec.registry.artifacts import verify_directory
from metarec.registry.schema import VersionRow


def _model_store(bentoml_home: Path) -> Any:
    from bentoml._internal.models import ModelStore

    root = Path(bentoml_home) / "models"
    root.mkdir(parents=True, exist_ok=True)
    return ModelStore(str(root))


def export_bento_model(
    *,
    bentoml_home: Path,
    tag: str,
    artifact_dir: Path,
    files: dict[str, str],
    labels: dict[str, str],
    metadata: dict[str, Any],
) -> str:
    """Save an artifact folder as a BentoML model (idempotent for the same tag and digest).

    A model already saved under ``tag`` with another digest is stale and is replaced.

    Args:
        bentoml_home: BentoML's home (the store is ``<home>/models``).
        tag: ``<model>:v<version>``.
        artifact_dir: A verified local copy of the artifact.
        files: The files to copy (relative names).
        labels: String labels (BentoML shows them in ``bentoml models list``/``get``).
        metadata: JSON-able metadata (``registry_digest``, per-file sha256, lineage).

    Returns:
        The BentoML tag.

    Raises:
        RegistryError: BentoML refused the tag or the store could not be written.
    """
    import bentoml
    from bentoml.exceptions import BentoMLException, NotFound

    store = _model_store(bentoml_home)
    try:
        existing = store.get(tag)
    except NotFound:
        existing = None
    except BentoMLException:
        existing = None
    if existing is not None:
        if existing.info.metadata.get("registry_digest") == metadata.get("registry_digest"):
            return str(existing.tag)
        # The same tag holds another artifact: an export left by another registry sharing this
        # BentoML home, or by a registry database that was reset. The registry is the source of
        # truth, so the stale export is replaced.
        delete_bento_model(bentoml_home=bentoml_home, tag=tag)
    try:
        with bentoml.models.create(
            tag, labels=labels, metadata=metadata, _model_store=store
        ) as model:
            for name in files:
                target = Path(model.path_of(name))
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(Path(artifact_dir) / name, target)
    except BentoMLException as exc:
        raise RegistryError(
            f"BentoML refused to save {tag} ({exc}).",
            fix="check BENTOML_HOME is writable, or set registry.export_bentoml to false.",
        ) from exc
    return str(model.tag)


def export_registered(
    bentoml_home: Path, *, model: str, artifact_dir: Path, row: VersionRow
) -> str:
    """Save a version being registered as a BentoML model and verify the saved copy.

    Labels name the model, version and algorithm; metadata holds the registry digest, the
    per-file sha256 and the lineage columns.

    Args:
        bentoml_home: BentoML's home.
        model: The registered model's name.
        artifact_dir: The local artifact folder being registered.
        row: The version's row (number, digest, files and lineage columns set).

    Returns:
        The BentoML tag (``<model>:v<N>``).

    Raises:
        RegistryError: BentoML refused the model.
        ArtifactChecksumError: The saved copy does not match the registered files.
    """
    tag = f"{model}:v{row.version}"
    exported = export_bento_model(
        bentoml_home=bentoml_home,
        tag=tag,
        artifact_dir=artifact_dir,
        files=row.files,
        labels={
            "metarec.model": model,
            "metarec.version": f"v{row.version}",
            "metarec.algorithm": str(row.algorithm or "unknown"),
        },
        metadata={
            "registry_digest": row.digest,
            "files_sha256": row.files,
            "dataset_fingerprint": row.dataset_fingerprint,
            "feature_service": row.feature_service,
            "code_version": row.code_version,
        },
    )
    verify_directory(
        bento_model_path(bentoml_home=bentoml_home, tag=tag), files=row.files, version=tag
    )
    return exported


def delete_bento_model(*, bentoml_home: Path, tag: str) -> None:
    """Remove a BentoML model (used to undo an export when the registration fails)."""
    from bentoml.exceptions import BentoMLException

    with contextlib.suppress(BentoMLException):
        _model_store(bentoml_home).delete(tag)


def bento_model_path(*, bentoml_home: Path, tag: str) -> Path:
    """The folder of a saved BentoML model (for services that load by tag)."""
    return Path(_model_store(bentoml_home).get(tag).path)
