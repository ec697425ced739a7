"""The validation gate: validate a training set, or accept one as the reference profile.

``validate_training_set`` runs the feature service's suite on the exact training set Feast
returned (checked against the fingerprint in its manifest), writes the JSON result and the
HTML report under ``<home>/validation/results/``, and the validation record beside the
training set (which training requires). A training set is a local path or an fsspec URI
(``s3://bucket/ts.parquet``): it is read, and its record written, there. It changes nothing
else: never the profile, never the snapshot.

``build_reference_profile`` accepts a training set as the new reference: it must pass every
integrity expectation; its statistics become a new profile version.
"""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

import pandas as pd

from metarec.clock import as_utc, utc_now
from metarec.config import Settings
from metarec.errors import (
    DataFormatError,
    DataSourceNotFoundError,
    FeatureStoreError,
    ValidationFailedError,
)
from metarec.features.fingerprint import dataset_fingerprint
from metarec.features.training_set import (
    Location,
    TrainingSetManifest,
    as_location,
    load_training_set,
    newest_training_set,
)
from metarec.validation.declared import suite_for
from metarec.validation.profile import ProfileStore, ReferenceProfile, compute_statistics
from metarec.validation.record import ValidationRecord, write_validation_record
from metarec.validation.report import write_report
from metarec.validation.result import ValidationResult, new_result_id, write_result_json
from metarec.validation.runner import ExpectationOutcome, run_suite
from metarec.validation.suite import SuiteSpec

LINEAGE_CHECK = "training_set_matches_manifest"


def validation_root(settings: Settings) -> Path:
    """Where validation results and reference profiles live."""
    return settings.paths.home / "validation"


def profile_store(settings: Settings) -> ProfileStore:
    """The reference profiles: under ``feast.offline_root`` when set, else in this home.

    On the object store beside the snapshots, every pod (a fresh retrain pod) shares them.
    """
    if settings.feast.offline_root:
        return ProfileStore(f"{settings.feast.offline_root.rstrip('/')}/validation/profiles")
    return ProfileStore(validation_root(settings) / "profiles")


def results_dir(settings: Settings) -> Path:
    """Where result JSON files and HTML reports are written."""
    return validation_root(settings) / "results"


def _load(training_set: Path | str) -> tuple[pd.DataFrame, TrainingSetManifest]:
    """The table and manifest of a training set, local or at a URI (fsspec).

    Raises:
        DataSourceNotFoundError: There is no training set there.
        FeatureStoreError: It has no manifest.
        DataFormatError: It is not a readable parquet file.
    """
    try:
        return load_training_set(training_set)
    except (DataSourceNotFoundError, FeatureStoreError):
        raise
    except Exception as exc:
        raise DataFormatError(
            training_set,
            problem=f"not a readable parquet file ({exc}).",
            fix="rebuild it with `metarec features training-set --out PATH`.",
        ) from exc


def _open(
    settings: Settings, training_set: Location | None
) -> tuple[Path | str, pd.DataFrame, TrainingSetManifest, SuiteSpec]:
    """The training set (default: the newest), its table, manifest and suite (with features).

    A local path is made absolute; a URI stays as it is (never made a local path).
    """
    where = as_location(training_set) if training_set else newest_training_set(settings)
    if isinstance(where, Path):
        where = where.expanduser().resolve()
    frame, manifest = _load(where)
    return where, frame, manifest, suite_for(manifest)


def _lineage_outcome(manifest: TrainingSetManifest, fingerprint: str) -> ExpectationOutcome:
    return ExpectationOutcome(
        name=LINEAGE_CHECK,
        type="metarec_fingerprint_matches_manifest",
        kind="lineage",
        batch="training_set",
        description="The file is the exact table Feast returned: its content fingerprint equals "
        "the one recorded in its manifest.",
        kwargs={"manifest_fingerprint": manifest.fingerprint},
        success=fingerprint == manifest.fingerprint,
        observed_value=fingerprint,
    )


def _moment(now: datetime | None) -> datetime:
    """The validation time: ``now`` in UTC, or the clock's when None."""
    return utc_now() if now is None else as_utc(now)


def _checked(
    frame: pd.DataFrame,
    manifest: TrainingSetManifest,
    suite: SuiteSpec,
    *,
    now: datetime,
    profile: ReferenceProfile | None,
    progress_bars: bool = False,
) -> tuple[str, list[ExpectationOutcome]]:
    """The frame's fingerprint, and the lineage check then the suite's expectations."""
    fingerprint = dataset_fingerprint(frame)
    outcomes = [_lineage_outcome(manifest, fingerprint)]
    outcomes += run_suite(frame, suite, now=now, profile=profile, progress_bars=progress_bars)
    return fingerprint, outcomes


def _write(result: ValidationResult, training_set: Path | str) -> None:
    """The JSON result and the HTML report, then the validation record beside the training set."""
    write_result_json(result, Path(result.result_json))
    write_report(result, Path(result.report_html))
    fields = set(ValidationRecord.model_fields)
    write_validation_record(
        training_set, ValidationRecord.model_validate(result.model_dump(include=fields))
    )


def _failure_fix(outcomes: list[ExpectationOutcome], training_set: str) -> str:
    failed = [item for item in outcomes if not item.success]
    fix = (
        "open the report, correct the data or the step that produced it, rebuild the training "
        "set (`metarec features training-set`) and validate again"
    )
    if failed and all(item.kind == "drift" for item in failed):
        fix += (
            "; if the shift is intended, accept this training set as the new reference with "
            f"`metarec features profile --training-set {training_set}`"
        )
    return fix + "."


def validate_training_set(
    settings: Settings,
    *,
    training_set: Location | None = None,
    now: datetime | None = None,
    progress_bars: bool = False,
) -> ValidationResult:
    """Validate a training set and record the outcome (pass or fail).

    Args:
        settings: Active settings.
        training_set: The training set, a path or URI; default: the newest one in the home.
        now: The validation time (default: now, UTC); event timestamps after it fail.
        progress_bars: Let Great Expectations show its own progress bars (off by default).

    Returns:
        The result (``success`` tells pass/fail). The JSON result, the HTML report and the
        validation record beside the training set are written either way.

    Raises:
        DataSourceNotFoundError: The training set does not exist.
        FeatureStoreError: It has no manifest (it was not built through Feast).
        ReferenceProfileNotFoundError: No reference profile exists for its feature service.
        ExpectationSuiteError: Its feature service has no valid suite.
    """
    import great_expectations as gx

    path, frame, manifest, suite = _open(settings, training_set)
    profile = profile_store(settings).current(manifest.feature_service)
    started = time.perf_counter()
    fingerprint, outcomes = _checked(
        frame, manifest, suite, now=_moment(now), profile=profile, progress_bars=progress_bars
    )
    duration = time.perf_counter() - started
    created_at = utc_now()
    result_id = new_result_id(created_at)
    json_path = results_dir(settings) / f"{result_id}.json"
    html_path = results_dir(settings) / f"{result_id}.html"
    result = ValidationResult(
        result_id=result_id,
        success=all(item.success for item in outcomes),
        created_at=created_at,
        suite_name=suite.name,
        suite_version=suite.version,
        feature_service=manifest.feature_service,
        feature_service_version=manifest.feature_service_version,
        dataset_fingerprint=fingerprint,
        snapshot_id=manifest.snapshot_id,
        training_set=str(path),
        rows=len(frame),
        reference_profile=profile.label,
        great_expectations_version=gx.__version__,
        duration_seconds=round(duration, 3),
        report_html=str(html_path),
        result_json=str(json_path),
        expectations=outcomes,
    )
    _write(result, path)
    return result


def raise_for_failure(result: ValidationResult) -> None:
    """Raise :class:`ValidationFailedError` listing every failing expectation of ``result``.

    Raises:
        ValidationFailedError: The result did not pass.
    """
    if result.success:
        return
    raise ValidationFailedError(
        f"Training set {result.training_set}",
        failures=result.failed_expectations,
        report=result.report_html,
        fix=_failure_fix(result.expectations, result.training_set),
    )


def check_integrity(
    frame: pd.DataFrame,
    manifest: TrainingSetManifest,
    suite: SuiteSpec,
    *,
    now: datetime,
) -> list[ExpectationOutcome]:
    """Run the lineage check and every integrity expectation (no reference profile needed)."""
    return _checked(frame, manifest, suite, now=now, profile=None)[1]


def build_reference_profile(
    settings: Settings, *, training_set: Location | None = None, now: datetime | None = None
) -> tuple[ReferenceProfile, Path | str]:
    """Accept a training set as the new reference profile of its feature service.

    The training set must pass the lineage check and every integrity expectation; the drift
    expectations are not run (this is how an intended shift is accepted). Nothing is written
    when it fails; an existing profile version is never replaced.

    Args:
        settings: Active settings.
        training_set: The training set, a path or URI; default: the newest one in the home.
        now: The validation time (default: now, UTC).

    Returns:
        The new profile and its file.

    Raises:
        ValidationFailedError: The training set fails an integrity expectation.
        DataSourceNotFoundError: The training set does not exist.
        FeatureStoreError: It has no manifest.
    """
    path, frame, manifest, suite = _open(settings, training_set)
    outcomes = check_integrity(frame, manifest, suite, now=_moment(now))
    failed = [item.name for item in outcomes if not item.success]
    if failed:
        raise ValidationFailedError(
            f"Training set {path} cannot become the reference profile: it",
            failures=failed,
            fix="build the profile from a training set that passes the integrity checks "
            "(run `metarec features validate` on it to see the observed values).",
        )
    store = profile_store(settings)
    profile = ReferenceProfile(
        version=store.next_version(manifest.feature_service),
        feature_service=manifest.feature_service,
        feature_service_version=manifest.feature_service_version,
        suite_name=suite.name,
        suite_version=suite.version,
        training_set=str(path),
        dataset_fingerprint=manifest.fingerprint,
        snapshot_id=manifest.snapshot_id,
        created_at=utc_now(),
        statistics=compute_statistics(
            frame,
            quantiles=suite.drift.ratings_per_user_quantiles,
            features=manifest.declared_features,
            reference_checks=suite.reference_checks,
        ),
    )
    return profile, store.add(profile)
