"""Every error MetaRec raises on purpose, each naming the problem and the fix.

The CLI prints ``str(error)`` as one line and exits non-zero, without a traceback.
"""

from __future__ import annotations

from pathlib import Path


class MetaRecError(Exception):
    """Base class: a problem the user can fix, with the fix in the message."""

    exit_code = 1

    def __init__(self, problem: str, *, fix: str) -> None:
        self.problem = problem
        self.fix = fix
        super().__init__(f"{problem} Fix: {fix}")


class ConfigError(MetaRecError):
    """The configuration file or an environment override is invalid."""

    exit_code = 2


class DataSourceNotFoundError(MetaRecError):
    """An input file, folder or archive member does not exist."""

    def __init__(self, path: Path | str, *, fix: str) -> None:
        self.path = str(path)
        super().__init__(f"{path}: not found.", fix=fix)


class DataFormatError(MetaRecError):
    """An input file does not have the expected format."""

    def __init__(
        self, path: Path | str, *, problem: str, fix: str, line: int | None = None
    ) -> None:
        self.path = str(path)
        self.line = line
        where = f"{path}, line {line}" if line is not None else str(path)
        super().__init__(f"{where}: {problem}", fix=fix)


class TableFormatError(DataFormatError):
    """A table given to ``data ingest --source table`` does not match its declared schema.

    The message names the file, the column (and the first bad row, 1-based, header excluded).
    """

    def __init__(
        self, path: Path | str, *, column: str, problem: str, fix: str, row: int | None = None
    ) -> None:
        self.column = column
        self.row = row
        where = f"column {column!r}" + (f", row {row}" if row is not None else "")
        super().__init__(path, problem=f"{where}: {problem}", fix=fix)


class ChecksumMismatchError(MetaRecError):
    """A downloaded or stored file does not match its expected checksum."""

    def __init__(self, what: str, *, expected: str, actual: str, fix: str) -> None:
        self.expected = expected
        self.actual = actual
        super().__init__(f"{what}: checksum mismatch (expected {expected}, got {actual}).", fix=fix)


class DownloadError(MetaRecError):
    """A URL could not be downloaded."""


class SnapshotNotFoundError(MetaRecError):
    """No ingested snapshot exists yet, or the requested one is missing."""


class FeatureStoreError(MetaRecError):
    """The Feast feature store is not applied, not materialised, or misconfigured."""


class ModelInputsError(MetaRecError):
    """A training set lacks the columns the model's encoder reads (its inputs are fixed)."""


class EntityNotFoundError(MetaRecError):
    """A user or item id has no features in the online store."""


class RegistryError(MetaRecError):
    """The model registry cannot do what was asked (base of the registry errors)."""


class RegistryConflictError(RegistryError):
    """Another change reached the registry first (concurrent promotion, duplicate artifact)."""

    exit_code = 3


class ModelNotFoundError(RegistryError):
    """No registered model has this name."""


class VersionNotFoundError(RegistryError):
    """The model has no such version (or no production version when one is needed)."""


class InvalidTransitionError(RegistryError):
    """A stage transition that the lifecycle staging → production → archived does not allow."""


class ArtifactError(MetaRecError):
    """A model artifact is missing, incomplete, unsafe (pickle), tampered with or unreadable."""


class ArtifactChecksumError(ChecksumMismatchError):
    """A stored artifact file no longer matches the sha256 recorded for its registry version."""

    def __init__(self, version: str, *, path: str, expected: str, actual: str) -> None:
        self.version = version
        self.path = path
        super().__init__(
            f"model version {version} ({path})",
            expected=expected,
            actual=actual,
            fix=f"the stored artifact was modified or corrupted; do not serve {version}: "
            "re-register the original artifact or roll back to another version.",
        )


class GatePolicyError(MetaRecError):
    """The evaluation gate policy file is missing or invalid."""

    exit_code = 2


class GateRejectedError(MetaRecError):
    """The evaluation gate rejected a candidate, so it cannot be registered."""

    exit_code = 4


class AuthError(MetaRecError):
    """A control-plane API call lacks a valid bearer token."""


class ExpectationSuiteError(MetaRecError):
    """An expectation suite file is missing or invalid."""

    exit_code = 2


class ReferenceProfileNotFoundError(MetaRecError):
    """No reference profile exists yet for a feature service, so drift cannot be judged."""


class ValidationFailedError(MetaRecError):
    """The validation gate failed: every failing expectation is listed in ``failures``."""

    def __init__(
        self, subject: str, *, failures: list[str], report: str | None = None, fix: str
    ) -> None:
        self.subject = subject
        self.failures = list(failures)
        self.report = report
        where = f" Report: {report}." if report else ""
        super().__init__(
            f"{subject} failed validation: {len(self.failures)} expectation(s) failed: "
            f"{', '.join(self.failures)}.{where}",
            fix=fix,
        )


class CheckpointError(MetaRecError):
    """A training checkpoint cannot be used to resume this run."""


class DeviceError(MetaRecError):
    """The requested compute device is not available."""


class ServingInputError(MetaRecError):
    """A request to the adaptation service is invalid (answered with a 4xx, never a 5xx).

    Attributes:
        field: The request field at fault (e.g. ``support[2].item_id``).
        status: The HTTP status to answer with.
    """

    def __init__(self, field: str, problem: str, *, fix: str, status: int = 422) -> None:
        self.field = field
        self.status = status
        super().__init__(f"{field}: {problem}", fix=fix)


class ServingModelError(MetaRecError):
    """The adaptation service cannot load the model version it was asked to serve."""


class RolloutError(MetaRecError):
    """A canary rollout cannot do what was asked (base of the rollout errors)."""


class RolloutConflictError(RolloutError):
    """Another rollout of the same model is already active."""

    exit_code = 3


class RolloutFailedError(RolloutError):
    """A canary rollout ended without promotion (rolled back, aborted or timed out)."""

    exit_code = 4


class RolloutNotFoundError(RolloutError):
    """No rollout matches (none active, or no such id)."""


class RouterError(RolloutError):
    """A traffic router refused or failed a weight change."""


class MetricSourceError(RolloutError):
    """Canary metrics could not be read (service /metrics or Prometheus unreachable or invalid)."""


class DeployError(RolloutError):
    """The deploy step could not set a version on a serving Deployment or a Flagger Canary."""


class RolloutStaleStateError(RolloutError):
    """A rollout's state changed since it was read: its compare-and-set save was refused."""


class ApiForbiddenError(MetaRecError):
    """An authenticated control-plane API caller lacks the role the call needs."""


class ApiRequestError(MetaRecError):
    """An API request refused before it is read: too large, bad length, identities unreadable."""

    def __init__(self, problem: str, *, fix: str, status: int = 413) -> None:
        super().__init__(problem, fix=fix)
        self.status = status


class TuningError(MetaRecError):
    """A hyper-parameter study cannot run as asked (``metarec tune``)."""

    exit_code = 2


class TuningSpaceError(TuningError):
    """A search-space file (YAML) is missing, malformed, or names an unknown key."""

    def __init__(self, source: Path | str, *, key: str, problem: str, fix: str) -> None:
        self.source = str(source)
        self.key = key
        where = f"{source}: {key}" if key else str(source)
        super().__init__(f"{where}: {problem}", fix=fix)


class UnknownTuningParameterError(TuningError):
    """A fixed trial parameter (``tune trial --param name=value``) is not in the space."""


class TuningStorageError(TuningError):
    """The study's storage (an Optuna RDB URL) cannot be opened, or the study is not there."""


class DistributedTrainingError(MetaRecError):
    """A distributed training job (TrainJob or PyTorchJob) failed, timed out or left no artifact."""
