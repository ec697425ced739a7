"""The validation record kept beside a training set: the contract between the gate and training.

``metarec features validate`` writes ``<training set stem>.validation.json``; training refuses a
training set whose record is missing, failed, or was made for different content (fingerprint).
The record's ``result_id`` and ``dataset_fingerprint`` go into the model card and the registry.
A training set on an object store (``s3://bucket/ts.parquet``) has its record beside it there.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import overload

from pydantic import BaseModel, ConfigDict

from metarec.errors import MetaRecError
from metarec.features.training_set import Location, as_location, read_text, sibling, write_text


class TrainingSetNotValidatedError(MetaRecError):
    """A training set has no passing validation result for its exact content."""


class ValidationRecord(BaseModel):
    """Summary of one validation run on one training set."""

    model_config = ConfigDict(frozen=True)

    result_id: str
    success: bool
    suite_name: str
    suite_version: str
    feature_service: str
    feature_service_version: str
    dataset_fingerprint: str
    failed_expectations: list[str]
    report_html: str
    result_json: str
    created_at: datetime


@overload
def record_path(training_set: Path) -> Path: ...
@overload
def record_path(training_set: str) -> str: ...
def record_path(training_set: Path | str) -> Path | str:
    """Where the validation record of ``training_set`` lives (a URL beside a URL)."""
    return sibling(training_set, ".validation.json")


def write_validation_record(training_set: Location, record: ValidationRecord) -> Path | str:
    """Write the record beside the training set atomically; return its location."""
    path = record_path(as_location(training_set))
    write_text(path, record.model_dump_json(indent=2))
    return path


def read_validation_record(training_set: Location) -> ValidationRecord | None:
    """The record beside ``training_set``, or None when it was never validated."""
    text = read_text(record_path(as_location(training_set)))
    return None if text is None else ValidationRecord.model_validate_json(text)


def require_passed(training_set: Location, *, fingerprint: str) -> ValidationRecord:
    """Return the passing record for exactly this content, or raise.

    Args:
        training_set: The training set file (a local path or an fsspec URL).
        fingerprint: Its content fingerprint (from its manifest).

    Raises:
        TrainingSetNotValidatedError: No record, a failed one, or one for other content.
    """
    record = read_validation_record(training_set)
    fix = f"run `metarec features validate --training-set {training_set}` and fix what it reports."
    if record is None:
        raise TrainingSetNotValidatedError(f"{training_set} has not been validated.", fix=fix)
    if not record.success:
        raise TrainingSetNotValidatedError(
            f"{training_set} failed validation ({', '.join(record.failed_expectations)}).",
            fix=fix,
        )
    if record.dataset_fingerprint != fingerprint:
        raise TrainingSetNotValidatedError(
            f"{training_set} changed since it was validated (fingerprint "
            f"{fingerprint} != {record.dataset_fingerprint}).",
            fix=fix,
        )
    return record
