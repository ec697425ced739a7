"""Pipeline component: the feature validation gate on one training set.

A thin, typed face over :func:`metarec.ops.check_training_set` for Prefect tasks and KFP components
(which wrap it; this module imports neither). Inputs and outputs are paths and small JSON-able
values; the training set is a local path or a URI on an object store (``s3://…``), its validation
record written beside it there. It is idempotent: validating the same training set again gives
the same verdict and rewrites the record beside it. On failure it raises
:class:`metarec.errors.ValidationFailedError` listing every failing expectation, so the
pipeline stops before training; nothing but the result, the report and the record is written.
"""

from __future__ import annotations

from datetime import datetime

from metarec.components import component_settings
from pydantic import BaseModel, ConfigDict


class ValidationOutput(BaseModel):
    """What the gate returns when a training set passes (all JSON-able)."""

    model_config = ConfigDict(frozen=True)

    result_id: str
    success: bool
    training_set: str
    dataset_fingerprint: str
    suite_name: str
    suite_version: str
    feature_service: str
    feature_service_version: str
    reference_profile: str | None
    report_html: str
    result_json: str


def validate_features(
    *,
    training_set: str,
    home: str | None = None,
    now: datetime | None = None,
) -> ValidationOutput:
    """Validate ``training_set`` against its feature service's suite and reference profile.

    Args:
        training_set: Path or URI of a training set built by ``metarec features training-set``.
        home: MetaRec home (default: the configured one, ``METAREC_HOME``).
        now: Validation time (default: now, UTC); event timestamps after it fail.

    Returns:
        The passing result's id, fingerprint, suite and report locations.

    Raises:
        ValidationFailedError: At least one expectation failed (all are listed).
        ReferenceProfileNotFoundError: No reference profile exists yet.
    """
    from metarec.ops import check_training_set

    settings = component_settings(home)
    result = check_training_set(settings, training_set=training_set, now=now)
    return ValidationOutput(
        result_id=result.result_id,
        success=result.success,
        training_set=result.training_set,
        dataset_fingerprint=result.dataset_fingerprint,
        suite_name=result.suite_name,
        suite_version=result.suite_version,
        feature_service=result.feature_service,
        feature_service_version=result.feature_service_version,
        reference_profile=result.reference_profile,
        report_html=result.report_html,
        result_json=result.result_json,
    )
