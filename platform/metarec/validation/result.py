"""The JSON result of one validation run: every expectation with its outcome, and the lineage."""

from __future__ import annotations

import os
import uuid
from datetime import datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, computed_field

from metarec.validation.runner import ExpectationOutcome


class ValidationStatistics(BaseModel):
    """Counts of expectations by outcome."""

    evaluated: int
    successful: int
    failed: int


class ValidationResult(BaseModel):
    """One validation run of one training set against one suite version."""

    model_config = ConfigDict(frozen=True)

    result_id: str
    success: bool
    created_at: datetime
    suite_name: str
    suite_version: str
    feature_service: str
    feature_service_version: str
    dataset_fingerprint: str
    snapshot_id: str
    training_set: str
    rows: int
    reference_profile: str | None
    great_expectations_version: str
    duration_seconds: float
    report_html: str
    result_json: str
    expectations: list[ExpectationOutcome]

    @computed_field  # type: ignore[prop-decorator]
    @property
    def failed_expectations(self) -> list[str]:
        """Names of every failing expectation, in suite order."""
        return [item.name for item in self.expectations if not item.success]

    @computed_field  # type: ignore[prop-decorator]
    @property
    def statistics(self) -> ValidationStatistics:
        """How many expectations ran, passed and failed."""
        failed = len(self.failed_expectations)
        total = len(self.expectations)
        return ValidationStatistics(evaluated=total, successful=total - failed, failed=failed)


def new_result_id(created_at: datetime) -> str:
    """A unique, sortable result id: ``val-<UTC time>-<8 hex>``."""
    return f"val-{created_at:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


def write_result_json(result: ValidationResult, path: Path) -> Path:
    """Write the result as JSON atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(result.model_dump_json(indent=2))
    os.replace(tmp, path)
    return path


def read_result_json(path: Path) -> ValidationResult:
    """Read a result written by :func:`write_result_json`."""
    return ValidationResult.model_validate_json(path.read_text())
