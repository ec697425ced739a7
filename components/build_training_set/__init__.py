"""Pipeline component: the point-in-time training set, through Feast's historical retrieval.

The output is a local path or a URI on an object store (``s3://…``, as the KFP pipeline passes
it); the manifest is written beside it there. Idempotent: the same applied snapshot gives the same
rows and so the same fingerprint.
"""

from __future__ import annotations

from metarec.components import component_settings
from pydantic import BaseModel, ConfigDict


class TrainingSetOutput(BaseModel):
    """Where the training set is and what it is (JSON-able)."""

    model_config = ConfigDict(frozen=True)

    path: str
    fingerprint: str
    rows: int
    feature_service: str
    feature_service_version: str
    snapshot_id: str


def build_training_set(*, home: str | None = None, out: str | None = None) -> TrainingSetOutput:
    """Build the ``meta_training`` training set of the applied snapshot.

    Args:
        home: MetaRec home (default: the configured one).
        out: Parquet path or URI (default: ``<home>/training_sets/<snapshot id>.parquet``).

    Returns:
        The training set's location (``out`` as given), fingerprint and lineage.
    """
    from metarec.ops import prepare_training_set

    manifest = prepare_training_set(component_settings(home), out=out or None)
    return TrainingSetOutput(
        path=manifest.path,
        fingerprint=manifest.fingerprint,
        rows=manifest.rows,
        feature_service=manifest.feature_service,
        feature_service_version=manifest.feature_service_version,
        snapshot_id=manifest.snapshot_id,
    )
