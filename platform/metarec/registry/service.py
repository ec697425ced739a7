"""The registry facade: one object over the database and the artifact store.

:class:`Registry` holds the engine, the artifact store and the BentoML home, and delegates every
call to the module of its concept:

* :mod:`.registration`: ``register``, ``record_rejection``;
* :mod:`.lifecycle`: ``promote``, ``rollback``, ``archive`` (compare-and-set stage moves, each
  one transaction with its :mod:`.ledger` entries);
* :mod:`.queries`: ``list_models``, ``list_versions``, ``get_version``, ``production``,
  ``production_version``, ``history``, ``find_by_digest``, ``ping``;
* :mod:`.artifact_access`: ``read_file``, ``read_card``, ``verify``, ``fetch``,
  ``load_weights`` (every byte checksum-verified);
* :mod:`.lineage`: the typed model card → lineage of a version.

Every mutation runs in one database transaction (:mod:`.sessions`) that also appends its ledger
entries, so a failure at any point leaves the registry and the ledger exactly as they were.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine

from metarec.errors import RegistryError
from metarec.registry import artifact_access, lifecycle, queries, registration
from metarec.registry.artifacts import ArtifactStore
from metarec.registry.db import (
    create_registry_engine,
    require_current_schema,
    upgrade_database,
)
from metarec.registry.lifecycle import UNSET, Expected
from metarec.registry.sessions import Sessions, StepHook
from metarec.registry.types import (
    GateEvidence,
    LedgerEntry,
    ModelSummary,
    Stage,
    VersionInfo,
    VersionRef,
)

if TYPE_CHECKING:
    import torch

    from metarec.config import Settings
    from metarec.training.model_card import ModelCard

__all__ = ["UNSET", "Registry", "StepHook", "artifact_root", "database_url"]


def database_url(settings: Settings) -> str:
    """The registry database URL of ``settings`` (default: SQLite in the MetaRec home)."""
    return settings.registry.database_url or f"sqlite:///{settings.paths.registry_db}"


def artifact_root(settings: Settings) -> str:
    """The artifact root of ``settings`` (default: ``<home>/artifacts``)."""
    return settings.registry.artifact_root or str(settings.paths.artifacts)


class Registry:
    """The model registry over one database and one artifact store."""

    def __init__(
        self,
        *,
        engine: Engine,
        artifacts: ArtifactStore,
        bentoml_home: Path | None = None,
        on_step: StepHook | None = None,
    ) -> None:
        """Wrap an engine whose schema is current (use :meth:`open` or :meth:`connect`).

        Args:
            engine: The registry database engine.
            artifacts: Where artifacts are stored.
            bentoml_home: Also save registered versions in this BentoML home (None: do not).
            on_step: Called with a step name between the steps of every mutation, inside its
                transaction (tests inject failures here).
        """
        self.engine = engine
        self.artifacts = artifacts
        self.bentoml_home = bentoml_home
        self._db = Sessions(engine, on_step=on_step)

    @classmethod
    def open(cls, settings: Settings, *, on_step: StepHook | None = None) -> Registry:
        """Open the registry that ``settings`` configure (migrated per ``migrate_on_open``).

        BentoML models go to ``$BENTOML_HOME`` when the user set it (as ``bentoml models list``
        reads it), else to the MetaRec home's BentoML folder.
        """
        bentoml_home = None
        if settings.registry.export_bentoml:
            bentoml_home = Path(os.environ.get("BENTOML_HOME") or settings.paths.bentoml_home)
        return cls.connect(
            url=database_url(settings),
            artifact_root=artifact_root(settings),
            bentoml_home=bentoml_home,
            on_step=on_step,
            migrate=settings.registry.migrate_on_open,
        )

    @classmethod
    def connect(
        cls,
        *,
        url: str,
        artifact_root: str,
        bentoml_home: Path | None = None,
        on_step: StepHook | None = None,
        migrate: bool = True,
    ) -> Registry:
        """Open the registry at a database URL, applying pending migrations first.

        With ``migrate`` False the schema is only checked: a database not at head is refused
        with the fix (``metarec db upgrade``) instead of being migrated by this process.
        """
        engine = create_registry_engine(url)
        try:
            if migrate:
                upgrade_database(engine)
            else:
                require_current_schema(engine)
        except RegistryError:
            engine.dispose()
            raise
        return cls(
            engine=engine,
            artifacts=ArtifactStore(root=artifact_root),
            bentoml_home=bentoml_home,
            on_step=on_step,
        )

    def close(self) -> None:
        """Release the database connections."""
        self.engine.dispose()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------- mutations
    def register(
        self,
        artifact_dir: Path,
        *,
        model: str,
        gate_decision: GateEvidence,
        actor: str,
        reason: str = "registered after passing the evaluation gate",
        source: str | None = None,
    ) -> VersionInfo:
        """Register an artifact folder as a new ``staging`` version.

        Args:
            artifact_dir: Folder with ``model.safetensors`` and ``model_card.json``.
            model: Registered model name.
            gate_decision: The evaluation gate's decision for exactly this artifact; a rejected
                candidate is never registered.
            actor: Who registers (user, pipeline run).
            reason: Why, for the ledger.
            source: Where the artifact really is (its URI when ``artifact_dir`` is a fetched
                copy); kept in the ledger (default: ``artifact_dir``).

        Returns:
            The new version.

        Raises:
            GateRejectedError: The decision rejected the candidate.
            ArtifactError: The folder is not a valid artifact (its card is not a valid
                ``ModelCard``), or the decision is for another.
            RegistryConflictError: The same artifact is already registered.
        """
        number = registration.register(
            self._db,
            self.artifacts,
            artifact_dir,
            model=model,
            gate_decision=gate_decision,
            actor=actor,
            reason=reason,
            bentoml_home=self.bentoml_home,
            source=source,
        )
        return self.get_version(VersionRef(model=model, version=number))

    def record_rejection(
        self, *, model: str, gate_decision: GateEvidence, actor: str, artifact: str
    ) -> None:
        """Append a ``reject`` ledger entry (no version is created) for a rejected candidate."""
        registration.record_rejection(
            self._db, model=model, gate_decision=gate_decision, actor=actor, artifact=artifact
        )

    def promote(
        self,
        ref: VersionRef,
        *,
        actor: str,
        reason: str,
        evidence: dict[str, Any] | None = None,
        expected_production: Expected = UNSET,
    ) -> VersionInfo:
        """Make a version the production version; the previous one is archived atomically.

        Args:
            ref: The version to promote (staging, or archived to re-promote).
            actor: Who promotes.
            reason: Why (required, kept in the ledger).
            evidence: JSON-able evidence (canary verdict, report links).
            expected_production: The production version the caller based the decision on
                (None: none). Default: the one in production when the call starts. If another
                promotion changed it meanwhile, the call fails with a conflict.

        Returns:
            The promoted version.

        Raises:
            RegistryConflictError: Production changed concurrently.
            InvalidTransitionError: The version is already in production.
            VersionNotFoundError / ModelNotFoundError: No such version.
        """
        lifecycle.promote(
            self._db,
            ref,
            actor=actor,
            reason=reason,
            evidence=evidence,
            expected_production=expected_production,
        )
        return self.get_version(ref)

    def rollback(
        self,
        model: str,
        *,
        actor: str,
        reason: str,
        evidence: dict[str, Any] | None = None,
        expected_production: Expected = UNSET,
    ) -> VersionInfo:
        """Promote the previous production version again (the current one is archived).

        Returns:
            The version now in production.

        Raises:
            VersionNotFoundError: There is no earlier production version to return to.
            RegistryConflictError: Production changed concurrently.
        """
        number = lifecycle.rollback(
            self._db,
            model,
            actor=actor,
            reason=reason,
            evidence=evidence,
            expected_production=expected_production,
        )
        return self.get_version(VersionRef(model=model, version=number))

    def archive(
        self,
        ref: VersionRef,
        *,
        actor: str,
        reason: str,
        evidence: dict[str, Any] | None = None,
    ) -> VersionInfo:
        """Archive a staging or production version (archiving production leaves none).

        Raises:
            InvalidTransitionError: The version is already archived.
        """
        lifecycle.archive(self._db, ref, actor=actor, reason=reason, evidence=evidence)
        return self.get_version(ref)

    # ----------------------------------------------------------------- reads
    def ping(self) -> str:
        """Check that the database answers; return its dialect name."""
        return queries.ping(self._db)

    def list_models(self) -> list[ModelSummary]:
        """Every registered model with its version count and production version."""
        return queries.list_models(self._db)

    def list_versions(self, model: str, *, stage: Stage | None = None) -> list[VersionInfo]:
        """The versions of ``model``, oldest first (optionally one stage only)."""
        return queries.list_versions(self._db, model, stage=stage)

    def get_version(self, ref: VersionRef) -> VersionInfo:
        """One version with its lineage and gate decision."""
        return queries.get_version(self._db, ref)

    def production(self, model: str) -> VersionInfo | None:
        """The production version of ``model``, or None."""
        return queries.production(self._db, model)

    def production_version(self, model: str) -> int | None:
        """The number of the production version of ``model`` (None: none, or no such model)."""
        return queries.production_version(self._db, model)

    def find_by_digest(self, model: str, digest: str) -> VersionInfo | None:
        """The version of ``model`` registered from the artifact with ``digest``, if any."""
        return queries.find_by_digest(self._db, model, digest)

    def history(self, model: str, *, version: int | None = None) -> list[LedgerEntry]:
        """The ledger of ``model`` (optionally of one version), oldest first."""
        return queries.history(self._db, model, version=version)

    # ----------------------------------------------------------------- artifacts
    def read_file(self, ref: VersionRef, name: str) -> bytes:
        """One file of a version's artifact, checksum-verified before it is returned."""
        return artifact_access.read_file(self._db, self.artifacts, ref, name)

    def read_card(self, ref: VersionRef) -> ModelCard:
        """The version's model card, checksum-verified and typed (raises ``ArtifactError``)."""
        return artifact_access.read_card(self._db, self.artifacts, ref)

    def verify(self, ref: VersionRef) -> VersionInfo:
        """Re-hash every stored file of a version; raise on the first mismatch."""
        return artifact_access.verify(self._db, self.artifacts, ref)

    def fetch(self, ref: VersionRef, dest: Path | None = None) -> Path:
        """Copy a version's artifact into ``dest`` (default: a new temporary folder), verified."""
        return artifact_access.fetch(self._db, self.artifacts, ref, dest)

    def load_weights(self, ref: VersionRef) -> dict[str, torch.Tensor]:
        """The version's weights as tensors: checksum verified, parsed by safetensors only."""
        return artifact_access.load_weights(self._db, self.artifacts, ref)
