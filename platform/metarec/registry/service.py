"""The registry: register versions, move them between stages, and keep the ledger.

Every mutation runs in one database transaction that also appends its ledger entries, so a
failure at any point leaves the registry and the ledger exactly as they were. Promotions are
compare-and-set: the caller states (or the registry observes before the transaction starts)
which version is in production; if another promotion changed it in the meantime the loser gets
:class:`~metarec.errors.RegistryConflictError`. Independently of the code, a partial unique index
makes two production versions of one model impossible.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from sqlalchemy import Engine, func, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from metarec.errors import (
    ArtifactError,
    GateRejectedError,
    InvalidTransitionError,
    ModelNotFoundError,
    RegistryConflictError,
    RegistryError,
    VersionNotFoundError,
)
from metarec.registry.artifacts import (
    WEIGHTS_FILE,
    ArtifactStore,
    check_safetensors_header,
    inspect_artifact,
    verify_directory,
)
from metarec.registry.db import READ_ONLY_OPTION, create_registry_engine, upgrade_database
from metarec.registry.schema import LedgerRow, ModelRow, VersionRow
from metarec.registry.types import (
    Action,
    GateEvidence,
    LedgerEntry,
    Lineage,
    ModelSummary,
    Stage,
    VersionInfo,
    VersionRef,
)

if TYPE_CHECKING:
    import torch

    from metarec.config import Settings


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Final = _Unset()
StepHook = Callable[[str], None]


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _now() -> datetime:
    return datetime.now(UTC)


def _fmt(version: int | None) -> str:
    return "none" if version is None else f"v{version}"


def _short(value: Any, limit: int = 128) -> str | None:
    return None if value is None else str(value)[:limit]


def database_url(settings: Settings) -> str:
    """The registry database URL of ``settings`` (default: SQLite in the MetaRec home)."""
    return settings.registry.database_url or f"sqlite:///{settings.paths.registry_db}"


def artifact_root(settings: Settings) -> str:
    """The artifact root of ``settings`` (default: ``<home>/artifacts``)."""
    return settings.registry.artifact_root or str(settings.paths.artifacts)


def _move_stage(
    session: Session, row: VersionRow, *, from_stage: str, to_stage: str, conflict: str
) -> None:
    """Compare-and-set a version's stage; a concurrent change raises ``conflict``.

    Raises:
        RegistryConflictError: The version was no longer in ``from_stage``.
    """
    result = session.execute(
        update(VersionRow)
        .where(VersionRow.id == row.id, VersionRow.stage == from_stage)
        .values(stage=to_stage)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        raise RegistryConflictError(
            conflict, fix="check `metarec models list`, then retry if still wanted."
        )


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
        self._on_step = on_step
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._read_sessions = sessionmaker(
            engine.execution_options(**{READ_ONLY_OPTION: True}), expire_on_commit=False
        )

    @classmethod
    def open(cls, settings: Settings, *, on_step: StepHook | None = None) -> Registry:
        """Open (and migrate) the registry that ``settings`` configure.

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
        )

    @classmethod
    def connect(
        cls,
        *,
        url: str,
        artifact_root: str,
        bentoml_home: Path | None = None,
        on_step: StepHook | None = None,
    ) -> Registry:
        """Open the registry at a database URL, applying pending migrations first."""
        engine = create_registry_engine(url)
        upgrade_database(engine)
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

    # ----------------------------------------------------------------- transactions
    def _step(self, name: str) -> None:
        if self._on_step is not None:
            self._on_step(name)

    @contextmanager
    def _read(self) -> Iterator[Session]:
        try:
            with self._read_sessions() as session, session.begin():
                yield session
        except DBAPIError as exc:
            raise self._database_error(exc) from exc

    @contextmanager
    def _write(self, what: str) -> Iterator[Session]:
        """One transaction; database conflicts become :class:`RegistryConflictError`."""
        try:
            with self._sessions() as session, session.begin():
                yield session
        except IntegrityError as exc:
            raise RegistryConflictError(
                f"Conflict while {what}: another change reached the registry first "
                f"({str(exc.orig).splitlines()[0]}).",
                fix="check `metarec models list` / `history`, then retry if still wanted.",
            ) from exc
        except OperationalError as exc:
            message = str(exc.orig).lower()
            if any(word in message for word in ("locked", "deadlock", "serializ", "could not")):
                raise RegistryConflictError(
                    f"Conflict while {what}: the registry was busy with another change "
                    f"({str(exc.orig).splitlines()[0]}).",
                    fix="retry in a moment.",
                ) from exc
            raise self._database_error(exc) from exc
        except DBAPIError as exc:
            raise self._database_error(exc) from exc

    def _database_error(self, exc: DBAPIError) -> RegistryError:
        return RegistryError(
            f"Registry database error ({type(exc.orig).__name__}: "
            f"{str(exc.orig).splitlines()[0] if str(exc.orig) else 'no detail'}).",
            fix=f"check that {self.engine.url.render_as_string()} is reachable and writable.",
        )

    def _model_row(self, session: Session, name: str, *, lock: bool = False) -> ModelRow:
        query = select(ModelRow).where(ModelRow.name == name)
        if lock:
            query = query.with_for_update()
        row = session.scalar(query)
        if row is None:
            raise ModelNotFoundError(
                f"No registered model named {name!r}.",
                fix="register a version first (`metarec models register ARTIFACT`), or check "
                "the name with `metarec models list`.",
            )
        return row

    def _version_row(self, session: Session, model: ModelRow, number: int) -> VersionRow:
        row = session.scalar(
            select(VersionRow).where(VersionRow.model_id == model.id, VersionRow.version == number)
        )
        if row is None:
            raise VersionNotFoundError(
                f"Model {model.name!r} has no version v{number}.",
                fix=f"list its versions with `metarec models list --model {model.name}`.",
            )
        return row

    def _ensure_model(self, name: str) -> None:
        with self._read() as session:
            if session.scalar(select(ModelRow.id).where(ModelRow.name == name)) is not None:
                return
        try:
            with self._sessions() as session, session.begin():
                session.add(ModelRow(name=name, created_at=_now()))
        except IntegrityError:
            pass  # created concurrently by another process: fine.

    def _append(
        self,
        session: Session,
        *,
        operation_id: str,
        model: ModelRow,
        version: VersionRow | None,
        action: Action,
        from_stage: str | None,
        to_stage: str | None,
        actor: str,
        reason: str,
        evidence: dict[str, Any],
    ) -> None:
        session.add(
            LedgerRow(
                operation_id=operation_id,
                model_id=model.id,
                version_id=None if version is None else version.id,
                version=None if version is None else version.version,
                action=action.value,
                from_stage=from_stage,
                to_stage=to_stage,
                actor=actor,
                reason=reason,
                evidence=evidence,
                created_at=_now(),
            )
        )
        session.flush()

    # ----------------------------------------------------------------- mutations
    def register(
        self,
        artifact_dir: Path,
        *,
        model: str,
        gate_decision: GateEvidence,
        actor: str,
        reason: str = "registered after passing the evaluation gate",
    ) -> VersionInfo:
        """Register an artifact folder as a new ``staging`` version.

        Args:
            artifact_dir: Folder with ``model.safetensors`` and ``model_card.json``.
            model: Registered model name.
            gate_decision: The evaluation gate's decision for exactly this artifact; a rejected
                candidate is never registered.
            actor: Who registers (user, pipeline run).
            reason: Why, for the ledger.

        Returns:
            The new version.

        Raises:
            GateRejectedError: The decision rejected the candidate.
            ArtifactError: The folder is not a valid artifact, or the decision is for another.
            RegistryConflictError: The same artifact is already registered.
        """
        VersionRef(model=model, version=1)  # validates the model name
        manifest = inspect_artifact(Path(artifact_dir))
        if not gate_decision.accepted:
            raise GateRejectedError(
                f"The evaluation gate rejected {artifact_dir}: {gate_decision.summary()}.",
                fix="improve the candidate (or review the gate policy); rejected candidates "
                "are never registered.",
            )
        if gate_decision.artifact_digest != manifest.digest:
            raise ArtifactError(
                f"The gate decision is for artifact {gate_decision.artifact_digest[:12]}, not "
                f"{artifact_dir} ({manifest.digest[:12]}).",
                fix=f"run the gate on this artifact: `metarec gate {artifact_dir}`.",
            )
        uri = self.artifacts.put(Path(artifact_dir), model=model, manifest=manifest)
        self._ensure_model(model)
        card = manifest.card
        exported: str | None = None
        try:
            with self._write(f"registering {artifact_dir}") as session:
                model_row = self._model_row(session, model, lock=True)
                duplicate = session.scalar(
                    select(VersionRow).where(
                        VersionRow.model_id == model_row.id, VersionRow.digest == manifest.digest
                    )
                )
                if duplicate is not None:
                    raise RegistryConflictError(
                        f"{artifact_dir} is already registered as {model}:v{duplicate.version} "
                        f"({duplicate.stage}).",
                        fix=f"use {model}:v{duplicate.version}; an artifact is registered once.",
                    )
                number = (
                    session.scalar(
                        select(func.max(VersionRow.version)).where(
                            VersionRow.model_id == model_row.id
                        )
                    )
                    or 0
                ) + 1
                tag = VersionRef(model=model, version=number).tag
                row = VersionRow(
                    model_id=model_row.id,
                    version=number,
                    stage=Stage.STAGING.value,
                    artifact_uri=uri,
                    digest=manifest.digest,
                    files=manifest.files,
                    card=card,
                    algorithm=_short(card.get("algorithm"), 64),
                    feature_service=_short(card.get("feature_service")),
                    feature_service_version=_short(card.get("feature_service_version")),
                    dataset_fingerprint=_short(card.get("dataset_fingerprint")),
                    snapshot_id=_short(card.get("snapshot_id")),
                    validation_result_id=_short(card.get("validation_result_id")),
                    code_version=_short(_code_version(card.get("code_version"))),
                    gate_decision=gate_decision.model_dump(mode="json"),
                    created_by=actor[:128],
                    created_at=_now(),
                )
                session.add(row)
                session.flush()
                self._step("version-inserted")
                self._append(
                    session,
                    operation_id=uuid.uuid4().hex,
                    model=model_row,
                    version=row,
                    action=Action.REGISTER,
                    from_stage=None,
                    to_stage=Stage.STAGING.value,
                    actor=actor,
                    reason=reason,
                    evidence={
                        "source": str(artifact_dir),
                        "digest": manifest.digest,
                        "gate": gate_decision.model_dump(mode="json"),
                    },
                )
                self._step("ledger-written")
                if self.bentoml_home is not None:
                    exported = self._export_bento(
                        tag=tag, artifact_dir=Path(artifact_dir), row=row, files=manifest.files
                    )
                    row.bento_tag = exported
                    session.flush()
                    self._step("bento-exported")
        except BaseException:
            if exported is not None and self.bentoml_home is not None:
                from metarec.registry.bento import delete_bento_model

                delete_bento_model(bentoml_home=self.bentoml_home, tag=exported)
            raise
        return self.get_version(VersionRef(model=model, version=number))

    def _export_bento(
        self, *, tag: str, artifact_dir: Path, row: VersionRow, files: dict[str, str]
    ) -> str:
        from metarec.registry.bento import bento_model_path, export_bento_model

        assert self.bentoml_home is not None
        exported = export_bento_model(
            bentoml_home=self.bentoml_home,
            tag=tag,
            artifact_dir=artifact_dir,
            files=files,
            labels={
                "metarec.model": tag.split(":")[0],
                "metarec.version": tag.split(":")[1],
                "metarec.algorithm": str(row.algorithm or "unknown"),
            },
            metadata={
                "registry_digest": row.digest,
                "files_sha256": files,
                "dataset_fingerprint": row.dataset_fingerprint,
                "feature_service": row.feature_service,
                "code_version": row.code_version,
            },
        )
        verify_directory(
            bento_model_path(bentoml_home=self.bentoml_home, tag=tag), files=files, version=tag
        )
        return exported

    def record_rejection(
        self, *, model: str, gate_decision: GateEvidence, actor: str, artifact: str
    ) -> None:
        """Append a ``reject`` ledger entry (no version is created) for a rejected candidate."""
        VersionRef(model=model, version=1)
        self._ensure_model(model)
        with self._write("recording a gate rejection") as session:
            model_row = self._model_row(session, model, lock=True)
            self._append(
                session,
                operation_id=uuid.uuid4().hex,
                model=model_row,
                version=None,
                action=Action.REJECT,
                from_stage=None,
                to_stage=None,
                actor=actor,
                reason=f"evaluation gate rejected {artifact}: {gate_decision.summary()}",
                evidence={"source": artifact, "gate": gate_decision.model_dump(mode="json")},
            )

    def find_by_digest(self, model: str, digest: str) -> VersionInfo | None:
        """The version of ``model`` registered from the artifact with ``digest``, if any."""
        with self._read() as session:
            row = session.scalar(
                select(VersionRow)
                .join(ModelRow, ModelRow.id == VersionRow.model_id)
                .where(ModelRow.name == model, VersionRow.digest == digest)
            )
            return None if row is None else _version_info(model, row)

    def production_version(self, model: str) -> int | None:
        """The number of the production version of ``model`` (None: none, or no such model)."""
        with self._read() as session:
            return session.scalar(
                select(VersionRow.version)
                .join(ModelRow, ModelRow.id == VersionRow.model_id)
                .where(ModelRow.name == model, VersionRow.stage == Stage.PRODUCTION.value)
            )

    def promote(
        self,
        ref: VersionRef,
        *,
        actor: str,
        reason: str,
        evidence: dict[str, Any] | None = None,
        expected_production: int | _Unset | None = UNSET,
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
        _require_reason(reason)
        if isinstance(expected_production, _Unset):
            expected_production = self.production_version(ref.model)
        with self._write(f"promoting {ref.tag}") as session:
            model_row = self._model_row(session, ref.model, lock=True)
            row = self._version_row(session, model_row, ref.version)
            self._make_production(
                session,
                model_row,
                row,
                action=Action.PROMOTE,
                actor=actor,
                reason=reason,
                evidence=evidence or {},
                expected=expected_production,
            )
        return self.get_version(ref)

    def rollback(
        self,
        model: str,
        *,
        actor: str,
        reason: str,
        evidence: dict[str, Any] | None = None,
        expected_production: int | _Unset | None = UNSET,
    ) -> VersionInfo:
        """Promote the previous production version again (the current one is archived).

        Returns:
            The version now in production.

        Raises:
            VersionNotFoundError: There is no earlier production version to return to.
            RegistryConflictError: Production changed concurrently.
        """
        _require_reason(reason)
        if isinstance(expected_production, _Unset):
            expected_production = self.production_version(model)
        with self._write(f"rolling back {model}") as session:
            model_row = self._model_row(session, model, lock=True)
            current = session.scalar(
                select(VersionRow).where(
                    VersionRow.model_id == model_row.id,
                    VersionRow.stage == Stage.PRODUCTION.value,
                )
            )
            previous: VersionRow | None = None
            for entry in session.scalars(
                select(LedgerRow)
                .where(
                    LedgerRow.model_id == model_row.id,
                    LedgerRow.to_stage == Stage.PRODUCTION.value,
                )
                .order_by(LedgerRow.id.desc())
            ):
                if current is not None and entry.version_id == current.id:
                    continue
                candidate = session.get(VersionRow, entry.version_id)
                if candidate is not None and candidate.stage == Stage.ARCHIVED.value:
                    previous = candidate
                    break
            if previous is None:
                raise VersionNotFoundError(
                    f"Model {model!r} has no previous production version to roll back to.",
                    fix="promote a specific version with `metarec models promote VERSION`.",
                )
            self._make_production(
                session,
                model_row,
                previous,
                action=Action.ROLLBACK,
                actor=actor,
                reason=reason,
                evidence={
                    "rolled_back_from": None if current is None else f"{model}:v{current.version}",
                    **(evidence or {}),
                },
                expected=expected_production,
            )
            number = previous.version
        return self.get_version(VersionRef(model=model, version=number))

    def _make_production(
        self,
        session: Session,
        model_row: ModelRow,
        row: VersionRow,
        *,
        action: Action,
        actor: str,
        reason: str,
        evidence: dict[str, Any],
        expected: int | None,
    ) -> None:
        tag = f"{model_row.name}:v{row.version}"
        if row.stage == Stage.PRODUCTION.value:
            raise InvalidTransitionError(
                f"{tag} is already the production version.",
                fix="nothing to do; `metarec models list` shows the stages.",
            )
        current = session.scalar(
            select(VersionRow).where(
                VersionRow.model_id == model_row.id, VersionRow.stage == Stage.PRODUCTION.value
            )
        )
        found = None if current is None else current.version
        if found != expected:
            raise RegistryConflictError(
                f"Cannot {action.value} {tag}: production changed while this request ran "
                f"(expected {_fmt(expected)} in production, found {_fmt(found)}).",
                fix="check `metarec models list` and `history`, then retry if still wanted.",
            )
        operation_id = uuid.uuid4().hex
        if current is not None:
            _move_stage(
                session,
                current,
                from_stage=Stage.PRODUCTION.value,
                to_stage=Stage.ARCHIVED.value,
                conflict=f"Cannot {action.value} {tag}: {model_row.name}:v{current.version} left "
                "production concurrently.",
            )
            self._append(
                session,
                operation_id=operation_id,
                model=model_row,
                version=current,
                action=Action.ARCHIVE,
                from_stage=Stage.PRODUCTION.value,
                to_stage=Stage.ARCHIVED.value,
                actor=actor,
                reason=f"replaced by {tag} ({action.value}): {reason}",
                evidence={"replaced_by": tag},
            )
            self._step("previous-archived")
        from_stage = row.stage
        _move_stage(
            session,
            row,
            from_stage=from_stage,
            to_stage=Stage.PRODUCTION.value,
            conflict=f"Cannot {action.value} {tag}: its stage changed concurrently.",
        )
        self._step("version-promoted")
        self._append(
            session,
            operation_id=operation_id,
            model=model_row,
            version=row,
            action=action,
            from_stage=from_stage,
            to_stage=Stage.PRODUCTION.value,
            actor=actor,
            reason=reason,
            evidence={
                "previous_production": None if current is None else f"{model_row.name}:v{found}",
                **evidence,
            },
        )
        self._step("ledger-written")

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
        _require_reason(reason)
        with self._write(f"archiving {ref.tag}") as session:
            model_row = self._model_row(session, ref.model, lock=True)
            row = self._version_row(session, model_row, ref.version)
            if row.stage == Stage.ARCHIVED.value:
                raise InvalidTransitionError(
                    f"{ref.tag} is already archived.",
                    fix="nothing to do; promote it to bring it back.",
                )
            from_stage = row.stage
            _move_stage(
                session,
                row,
                from_stage=from_stage,
                to_stage=Stage.ARCHIVED.value,
                conflict=f"Cannot archive {ref.tag}: its stage changed concurrently.",
            )
            self._step("version-archived")
            self._append(
                session,
                operation_id=uuid.uuid4().hex,
                model=model_row,
                version=row,
                action=Action.ARCHIVE,
                from_stage=from_stage,
                to_stage=Stage.ARCHIVED.value,
                actor=actor,
                reason=reason,
                evidence=evidence or {},
            )
            self._step("ledger-written")
        return self.get_version(ref)

    # ----------------------------------------------------------------- reads
    def ping(self) -> str:
        """Check that the database answers; return its dialect name."""
        with self._read() as session:
            session.execute(select(1))
        return self.engine.dialect.name

    def list_models(self) -> list[ModelSummary]:
        """Every registered model with its version count and production version."""
        with self._read() as session:
            models = session.scalars(select(ModelRow).order_by(ModelRow.name)).all()
            out = []
            for row in models:
                count = session.scalar(
                    select(func.count(VersionRow.id)).where(VersionRow.model_id == row.id)
                )
                production = session.scalar(
                    select(VersionRow.version).where(
                        VersionRow.model_id == row.id, VersionRow.stage == Stage.PRODUCTION.value
                    )
                )
                out.append(
                    ModelSummary(
                        name=row.name,
                        versions=count or 0,
                        production=production,
                        created_at=_utc(row.created_at),
                    )
                )
            return out

    def list_versions(self, model: str, *, stage: Stage | None = None) -> list[VersionInfo]:
        """The versions of ``model``, oldest first (optionally one stage only)."""
        with self._read() as session:
            model_row = self._model_row(session, model)
            query = select(VersionRow).where(VersionRow.model_id == model_row.id)
            if stage is not None:
                query = query.where(VersionRow.stage == stage.value)
            rows = session.scalars(query.order_by(VersionRow.version)).all()
            return [_version_info(model, row) for row in rows]

    def get_version(self, ref: VersionRef) -> VersionInfo:
        """One version with its lineage and gate decision."""
        with self._read() as session:
            model_row = self._model_row(session, ref.model)
            return _version_info(ref.model, self._version_row(session, model_row, ref.version))

    def production(self, model: str) -> VersionInfo | None:
        """The production version of ``model``, or None."""
        number = self.production_version(model)
        return None if number is None else self.get_version(VersionRef(model=model, version=number))

    def history(self, model: str, *, version: int | None = None) -> list[LedgerEntry]:
        """The ledger of ``model`` (optionally of one version), oldest first."""
        with self._read() as session:
            model_row = self._model_row(session, model)
            query = select(LedgerRow).where(LedgerRow.model_id == model_row.id)
            if version is not None:
                query = query.where(LedgerRow.version == version)
            return [
                LedgerEntry(
                    id=row.id,
                    operation_id=row.operation_id,
                    model=model,
                    version=row.version,
                    action=Action(row.action),
                    from_stage=None if row.from_stage is None else Stage(row.from_stage),
                    to_stage=None if row.to_stage is None else Stage(row.to_stage),
                    actor=row.actor,
                    reason=row.reason,
                    evidence=row.evidence,
                    created_at=_utc(row.created_at),
                )
                for row in session.scalars(query.order_by(LedgerRow.id))
            ]

    # ----------------------------------------------------------------- artifacts
    def read_file(self, ref: VersionRef, name: str) -> bytes:
        """One file of a version's artifact, checksum-verified before it is returned."""
        info = self.get_version(ref)
        if name not in info.files:
            raise ArtifactError(
                f"{ref.tag} has no file {name!r}.", fix=f"its files are {sorted(info.files)}."
            )
        return self.artifacts.read_verified(
            info.artifact_uri, name, sha256=info.files[name], version=ref.tag
        )

    def verify(self, ref: VersionRef) -> VersionInfo:
        """Re-hash every stored file of a version; raise on the first mismatch."""
        info = self.get_version(ref)
        for name, sha in info.files.items():
            self.artifacts.read_verified(info.artifact_uri, name, sha256=sha, version=ref.tag)
        return info

    def fetch(self, ref: VersionRef, dest: Path | None = None) -> Path:
        """Copy a version's artifact into ``dest`` (default: a new temporary folder), verified."""
        info = self.get_version(ref)
        target = Path(dest) if dest is not None else Path(tempfile.mkdtemp(prefix="metarec-"))
        return self.artifacts.fetch(
            info.artifact_uri, files=info.files, version=ref.tag, dest=target
        )

    def load_weights(self, ref: VersionRef) -> dict[str, torch.Tensor]:
        """The version's weights as tensors: checksum verified, parsed by safetensors only."""
        from safetensors.torch import load

        data = self.read_file(ref, WEIGHTS_FILE)
        check_safetensors_header(data, where=f"{ref.tag}/{WEIGHTS_FILE}")
        return load(data)


def _code_version(value: Any) -> str | None:
    """The card's code version as one string (training writes {metarec, git_commit})."""
    if isinstance(value, dict):
        return " ".join(f"{key}={item}" for key, item in value.items() if item is not None)
    return None if value is None else str(value)


def _training_config(card: dict[str, Any]) -> dict[str, Any]:
    config = {
        key: card[key]
        for key in ("hyperparameters", "architecture", "model", "inner_loop", "finetune")
        if key in card
    }
    if isinstance(card.get("split"), dict):
        config["split"] = {
            key: value for key, value in card["split"].items() if not isinstance(value, list)
        }
    if isinstance(card.get("training"), dict):
        config["training"] = {
            key: value for key, value in card["training"].items() if key != "history"
        }
    return config


def _require_reason(reason: str) -> None:
    if not reason or not reason.strip():
        raise InvalidTransitionError(
            "A stage transition needs a reason.", fix="pass --reason '…' (kept in the ledger)."
        )


def _version_info(model: str, row: VersionRow) -> VersionInfo:
    card = row.card or {}
    return VersionInfo(
        model=model,
        version=row.version,
        tag=f"{model}:v{row.version}",
        stage=Stage(row.stage),
        artifact_uri=row.artifact_uri,
        digest=row.digest,
        files=row.files,
        lineage=Lineage(
            algorithm=row.algorithm,
            feature_service=row.feature_service,
            feature_service_version=row.feature_service_version,
            dataset_fingerprint=row.dataset_fingerprint,
            snapshot_id=row.snapshot_id,
            validation_result_id=row.validation_result_id,
            code_version=row.code_version,
            trained_at=_short(card.get("created_at")),
            training_config=_training_config(card),
            metrics=card.get("metrics") or {},
            test_users=card.get("test_users") or {},
        ),
        gate_decision=row.gate_decision,
        bento_tag=row.bento_tag,
        created_by=row.created_by,
        created_at=_utc(row.created_at),
    )
