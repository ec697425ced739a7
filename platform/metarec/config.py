"""Typed settings: defaults < YAML file < ``METAREC_*`` environment variables.

One MetaRec home directory (``METAREC_HOME``, default ``~/.metarec``) holds every embedded
default: snapshots, the Feast registry and stores, artifacts, and the Prefect and BentoML homes.

Nested values are overridden with a double underscore, e.g. ``METAREC_FEAST__ENVIRONMENT=cluster``.
The YAML file is given by ``--config`` on the CLI or ``METAREC_CONFIG``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from metarec.compute import ComputeSpec
from metarec.config_notify import NotificationSettings
from metarec.config_rollout import RolloutSettings
from metarec.errors import ConfigError

# The repository root when MetaRec runs from a checkout (platform/metarec/config.py → root).
_CHECKOUT_ROOT = Path(__file__).resolve().parents[2]


class FeastSettings(BaseModel):
    """Where the Feast repository is and which of its configurations is active."""

    model_config = ConfigDict(extra="forbid")

    environment: Literal["local", "cluster", "local-ray", "cluster-ray"] = Field(
        default="local",
        description="`local`: SQLite online store, file offline store, SQL registry on SQLite. "
        "`cluster`: Redis online store, PostgreSQL registry, S3-style offline paths. "
        "`*-ray`: the same stores, materialised by Feast's Ray compute engine.",
    )
    project: str = Field(
        default="metarec",
        pattern=r"^[A-Za-z0-9_]+$",
        description="Feast project name (letters, digits, underscores).",
    )
    repo_path: Path = Field(
        default=_CHECKOUT_ROOT / "feature_repo",
        description="The Feast repository (feature_store.yaml files and definitions).",
    )
    redis_connection_string: str = Field(
        default="127.0.0.1:6379", description="Cluster online store (Redis), host:port[,opts]."
    )
    registry_url: str = Field(
        default="postgresql+psycopg://postgres@127.0.0.1:5432/test",
        description="Cluster Feast registry (SQLAlchemy URL).",
    )
    offline_root: str = Field(
        default="",
        description="Object-store root of the snapshots (e.g. s3://bucket/offline): `data "
        "ingest` publishes each to `<root>/<id>/` and `<root>/CURRENT`; the Feast sources read "
        "them there and pods without the snapshot fetch it. Empty: the snapshot folder in the "
        "MetaRec home.",
    )


class WorkflowSettings(BaseModel):
    """Schedules and images of the Prefect flows and KFP pipeline."""

    model_config = ConfigDict(extra="forbid")

    retrain_cron: str = Field(default="0 3 * * 1", description="Retraining (Mondays 03:00).")
    materialize_cron: str = Field(default="0 2 * * *", description="Ingest + materialise daily.")
    source: Literal["ml-100k", "ml-1m", "synthetic"] = Field(
        default="ml-100k", description="Dataset the scheduled materialize flow ingests."
    )
    source_path: str | None = Field(default=None, description="Local archive for `source`.")
    training_config: Path | None = Field(
        default=None, description="YAML hyper-parameters for scheduled retraining."
    )
    image: str = Field(
        default="ghcr.io/metarec/metarec:0.1.0",
        description="Platform image for Kubernetes jobs and KFP components.",
    )


_ROLE_NAME = r"^[a-z_][a-z0-9_]{0,62}$"  # unquoted PostgreSQL identifiers fold to lower case


class DatabaseRoles(BaseModel):
    """PostgreSQL login roles that ``metarec db upgrade`` grants each workload's privileges to."""

    model_config = ConfigDict(extra="forbid")

    serving: str | None = Field(
        default=None, pattern=_ROLE_NAME, description="Serving pods: read versions only."
    )
    controller: str | None = Field(
        default=None,
        pattern=_ROLE_NAME,
        description="Rollout controller: rollout rows, stage columns, ledger appends.",
    )
    writer: str | None = Field(
        default=None,
        pattern=_ROLE_NAME,
        description="API, training and retrain jobs: register, move stages, start rollouts.",
    )


class RegistrySettings(BaseModel):
    """The model registry: database, artifact storage and control-plane API access."""

    model_config = ConfigDict(extra="forbid")

    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the registry database. Empty: "
        "sqlite:///<home>/registry.db. PostgreSQL: postgresql+psycopg://user@host:5432/db.",
    )
    migrate_on_open: bool = Field(
        default=True,
        description="Migrate the schema when a process opens the registry. Off: check that it "
        "is at head and refuse otherwise (run `metarec db upgrade`, the Helm hook Job).",
    )
    database_roles: DatabaseRoles = Field(
        default_factory=DatabaseRoles,
        description="PostgreSQL: login roles `metarec db upgrade` grants to (SQLite: unused).",
    )
    artifact_root: str | None = Field(
        default=None,
        description="Where registered artifacts are stored: a local folder or an fsspec URL "
        "(e.g. s3://bucket/metarec). Empty: <home>/artifacts.",
    )
    model_name: str = Field(
        default="metarec",
        pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$",
        description="The registered model that commands address by default.",
    )
    export_bentoml: bool = Field(
        default=True,
        description="Also save every registered version in the BentoML model store.",
    )
    gate_policy: Path | None = Field(
        default=None,
        description="Evaluation gate policy (YAML). Empty: the policy shipped with MetaRec.",
    )
    api_token: SecretStr | None = Field(
        default=None,
        description="Deprecated: one API token holding every role (identity `api-token`); "
        "prefer api_tokens_file. Neither set: authenticated calls are refused.",
    )
    api_tokens_file: Path | None = Field(
        default=None, description="API identities, roles and token hashes (docs/registry.md)."
    )
    api_max_body_bytes: int = Field(default=1_048_576, ge=1024, description="Larger: 413.")
    read_requires_token: bool = Field(
        default=False, description="Require a `reader` identity on read calls of the API too."
    )


class ServingSettings(BaseModel):
    """The BentoML adaptation service (``metarec serve``): limits, batching, network."""

    model_config = ConfigDict(extra="forbid")

    version: str | None = Field(
        default=None,
        description="Registry version to serve (3, v3 or <model>:v3). Empty: the stage below.",
    )
    stage: Literal["production", "staging"] = Field(
        default="production",
        description="Serve the model's version in this stage when no version is given "
        "(staging: the newest staging version).",
    )
    host: str = Field(default="127.0.0.1", description="Address `metarec serve` binds.")
    port: int = Field(default=3000, ge=1, le=65535, description="Port `metarec serve` binds.")
    max_support_size: int = Field(
        default=100, ge=1, description="Largest support set a request may carry."
    )
    max_candidates: int = Field(
        default=5000, ge=1, description="Most candidate/item ids a request may carry."
    )
    max_k: int = Field(default=1000, ge=1, description="Largest `k` of /recommend.")
    max_feedback_events: int = Field(default=1000, ge=1, description="Events per /feedback.")
    max_body_bytes: int = Field(
        default=1_000_000, ge=1024, description="Larger request bodies are refused (413)."
    )
    adaptation_steps: int | None = Field(
        default=None,
        ge=0,
        description="Override the model card's inner steps. Empty: the card's (the offline "
        "evaluation's) steps, which keeps served predictions equal to offline evaluation.",
    )
    max_batch_size: int = Field(
        default=32, ge=1, description="Most requests adapted together (1: no batching)."
    )
    max_latency_ms: float = Field(
        default=2.0,
        ge=0,
        description="How long an idle batcher waits for more requests before adapting.",
    )
    torch_threads: int | None = Field(
        default=1,
        ge=1,
        description="torch intra-op threads of the service process. 1 suits its many small "
        "batched ops best (more threads were slower on 2 cores, docs/serving.md) and never "
        "oversubscribes a pod's CPU limit. null (settings file): torch's default (one per host "
        "core).",
    )
    feature_refresh_seconds: float = Field(
        default=30.0,
        gt=0,
        description="How often the service checks Feast for a newer materialisation.",
    )
    registry_poll_seconds: float = Field(
        default=10.0,
        ge=0,
        description="How often a service started for a stage (no pinned version) asks the "
        "registry which version is in that stage; on a change it loads the new version "
        "(checksum verified) in the background and swaps it in. 0: never (serve the version "
        "resolved at start). A pinned version never changes.",
    )
    prediction_memory: int = Field(
        default=100_000,
        ge=0,
        description="(user, item) predictions remembered to score later feedback.",
    )
    quality_window: int = Field(
        default=1000, ge=1, description="Feedback events in the rolling online-MAE gauge."
    )
    served_list_memory: int = Field(
        default=10_000,
        ge=0,
        description="Users whose last /recommend list is remembered to count online hits "
        "(least recently served forgotten first; 0: no hit rate).",
    )
    hit_rate_window: int = Field(
        default=1000,
        ge=1,
        description="Positive feedback events (rating >= 4) in the rolling online hit-rate gauge.",
    )
    drift_window_requests: int = Field(
        default=1000,
        ge=1,
        description="Latest /recommend and /predict requests in the drift window "
        "(metarec_drift_psi, metarec_cold_start_share).",
    )
    drift_min_requests: int = Field(
        default=100,
        ge=1,
        description="Requests the drift window needs before metarec_drift_psi is set (fewer: "
        "the PSI of a small sample is noise).",
    )
    drift_alert_psi: float = Field(
        default=0.25,
        gt=0,
        description="PSI at which the service sends a drift_alert notification (once per "
        "statistic until it falls below 80 % of it); needs a webhook that wants drift_alert.",
    )
    drift_refresh_seconds: float = Field(
        default=10.0,
        ge=0,
        description="Recompute the drift gauges at most this often (off the request path's "
        "cost: a request only adds its counts).",
    )
    direct_endpoints: bool = Field(
        default=True,
        description="Answer POST /recommend, /predict and /feedback in a Starlette app mounted "
        "on the service (BentoML's mount_asgi_app), behind BentoML's per-request layers but "
        "left out of its access log and traces (same input models, answers and errors; "
        "counted in the metarec_* and BentoML's request metrics). false: @bentoml.api "
        "methods, answered by BentoML's own request path.",
    )
    feedback_token: SecretStr | None = Field(default=None, description="/feedback's bearer token.")


class MetaRecPaths(BaseModel):
    """Every location under the MetaRec home, derived from it (never configured twice)."""

    model_config = ConfigDict(frozen=True)

    home: Path

    @property
    def snapshots(self) -> Path:
        """Ingested, versioned data snapshots."""
        return self.home / "data" / "snapshots"

    @property
    def feast(self) -> Path:
        """Feast's embedded registry and online store."""
        return self.home / "feast"

    @property
    def training_sets(self) -> Path:
        """Training sets built from Feast's historical retrieval."""
        return self.home / "training_sets"

    @property
    def artifacts(self) -> Path:
        """Model artifacts."""
        return self.home / "artifacts"

    @property
    def registry_db(self) -> Path:
        """The embedded (SQLite) model registry database."""
        return self.home / "registry.db"

    @property
    def prefect_home(self) -> Path:
        """Prefect's home (``PREFECT_HOME``)."""
        return self.home / "prefect"

    @property
    def bentoml_home(self) -> Path:
        """BentoML's home (``BENTOML_HOME``)."""
        return self.home / "bentoml"

    @property
    def rollouts(self) -> Path:
        """Canary rollout reports and the logs of the services a local canary started."""
        return self.home / "rollouts"


class Settings(BaseSettings):
    """MetaRec settings. Load them with :func:`load_settings`."""

    model_config = SettingsConfigDict(
        env_prefix="METAREC_",
        env_nested_delimiter="__",
        extra="forbid",
    )

    home: Path = Field(
        default_factory=lambda: Path("~/.metarec").expanduser(),
        description="The MetaRec home: every embedded default lives under it.",
    )
    telemetry: bool = Field(
        default=False,
        description="Allow Prefect, BentoML and Feast to send usage telemetry. Off by default.",
    )
    feast: FeastSettings = Field(default_factory=FeastSettings)
    training_compute: ComputeSpec = Field(
        default_factory=ComputeSpec,
        description="Compute of the training step on Kubernetes (KFP, Prefect, Helm).",
    )
    registry: RegistrySettings = Field(default_factory=RegistrySettings)
    rollout: RolloutSettings = Field(default_factory=RolloutSettings)
    notifications: NotificationSettings = Field(default_factory=NotificationSettings)
    workflows: WorkflowSettings = Field(default_factory=WorkflowSettings)
    serving: ServingSettings = Field(default_factory=ServingSettings)

    @property
    def paths(self) -> MetaRecPaths:
        """Locations derived from ``home``."""
        return MetaRecPaths(home=self.home.expanduser().resolve())

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Order the sources: init arguments, environment, YAML file, defaults."""
        return (init_settings, env_settings, YamlConfigSettingsSource(settings_cls))


def load_settings(*, config_file: Path | None = None, **overrides: object) -> Settings:
    """Load settings from defaults, an optional YAML file and ``METAREC_*`` variables.

    Args:
        config_file: YAML file with settings; defaults to ``$METAREC_CONFIG`` when set.
        **overrides: Values that win over every other source (used by tests and the CLI).

    Returns:
        The validated settings.

    Raises:
        ConfigError: The file is missing or not valid YAML, or a value is invalid.
    """
    path = config_file or os.environ.get("METAREC_CONFIG") or None
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(
                f"Config file {path} not found.",
                fix="pass an existing YAML file with --config or METAREC_CONFIG.",
            )
        try:
            yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise ConfigError(
                f"Config file {path} is not valid YAML ({exc}).", fix="correct the YAML syntax."
            ) from exc

    class _SettingsFromFile(Settings):
        model_config = SettingsConfigDict(yaml_file=path)

    try:
        return _SettingsFromFile(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"])
        raise ConfigError(
            f"Invalid setting '{field}': {first['msg']} ({len(exc.errors())} error(s)).",
            fix=f"correct '{field}' in {path or 'the METAREC_* environment'}; "
            "see docs/configuration.md.",
        ) from exc
