"""The validation record kept beside a training set: the contract between the gate and training.

``metarec features validate`` writes ``<training set stem>.validation.json``; training refuses a
training set whose record is missing, failed, or was made for different content (fingerprint).
The record's ``result_id`` and ``dataset_fingerprint`` go into the model card and the registry.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from metarec.errors import MetaRecError


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


def record_path(training_set: Path) -> Path:
    """Where the validation record of ``training_set`` lives."""
    return training_set.with_name(training_set.stem + ".validation.json")


def write_validation_record(training_set: Path, record: ValidationRecord) -> Path:
    """Write the record beside the training set atomically; return its path."""
    path = record_path(training_set)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(record.model_dump_json(indent=2))
    os.replace(tmp, path)
    return path


def read_validation_record(training_set: Path) -> ValidationRecord | None:
    """The record beside ``training_set``, or None when it was never validated."""
    path = record_path(training_set)
    if not path.is_file():
        return None
    return ValidationRecord.model_validate_json(path.read_text())


def require_passed(training_set: Path, *, fingerprint: str) -> ValidationRecord:
    """Return the passing record for exactly this content, or raise.

    Args:
        training_set: The training set file.
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
