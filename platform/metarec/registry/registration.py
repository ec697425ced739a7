"""Registration: an artifact the evaluation gate accepted becomes a new ``staging`` version.

One transaction inserts the version and its ``register`` ledger entry (and, when BentoML export
is on, records the BentoML tag); a failure at any point leaves the registry and the ledger as
they were and removes a BentoML model it already saved. A rejected candidate is never
registered: :func:`record_rejection` only appends a ``reject`` ledger entry.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from metarec.clock import utc_now
from metarec.errors import ArtifactError, GateRejectedError, RegistryConflictError
from metarec.registry import ledger, rows
from metarec.registry.artifacts import ArtifactManifest, ArtifactStore, inspect_artifact
from metarec.registry.bento import delete_bento_model, export_registered
from metarec.registry.ledger import Entry
from metarec.registry.lineage import card_columns
from metarec.registry.schema import ModelRow, VersionRow
from metarec.registry.sessions import Sessions
from metarec.registry.types import Action, GateEvidence, Stage, VersionRef


def register(
    db: Sessions,
    store: ArtifactStore,
    artifact_dir: Path,
    *,
    model: str,
    gate_decision: GateEvidence,
    actor: str,
    reason: str,
    bentoml_home: Path | None = None,
    source: str | None = None,
) -> int:
    """Register an artifact folder as a new ``staging`` version.

    Args:
        db: The registry's sessions.
        store: Where the artifact is copied.
        artifact_dir: Folder with ``model.safetensors`` and ``model_card.json``.
        model: Registered model name.
        gate_decision: The evaluation gate's decision for exactly this artifact.
        actor: Who registers (user, pipeline run).
        reason: Why, for the ledger.
        bentoml_home: Also save the version in this BentoML home (None: do not).
        source: Where the artifact really is, kept in the ledger as the version's source and
            named in errors: the URI (``s3://…``) when ``artifact_dir`` is only a temporary
            local copy of it (default: ``artifact_dir``).

    Returns:
        The new version's number.

    Raises:
        GateRejectedError: The decision rejected the candidate.
        ArtifactError: The folder is not a valid artifact, or the decision is for another.
        RegistryConflictError: The same artifact is already registered.
    """
    candidate = _accepted_candidate(
        store,
        Path(artifact_dir),
        model=model,
        gate_decision=gate_decision,
        source=source or str(artifact_dir),
    )
    rows.ensure_model(db, model)
    exported: list[str] = []
    try:
        with db.write(f"registering {candidate.source}") as session:
            model_row = rows.model_row(session, model, lock=True)
            row = _add_version(db, session, model_row, candidate, actor=actor, reason=reason)
            if bentoml_home is not None:
                _export(db, session, row, candidate, bentoml_home=bentoml_home, exported=exported)
            number = row.version
    except BaseException:
        for tag in exported:
            assert bentoml_home is not None
            delete_bento_model(bentoml_home=bentoml_home, tag=tag)
        raise
    return number


def _accepted_candidate(
    store: ArtifactStore,
    artifact_dir: Path,
    *,
    model: str,
    gate_decision: GateEvidence,
    source: str,
) -> _Candidate:
    """Inspect the artifact, check the decision, copy it into the store.

    Raises:
        ArtifactError: The folder is not a valid artifact, or the decision is for another.
        GateRejectedError: The decision rejected the candidate.
    """
    VersionRef(model=model, version=1)  # validates the model name
    manifest = inspect_artifact(artifact_dir)
    check_decision(gate_decision, manifest=manifest, artifact_dir=source)
    return _Candidate(
        model=model,
        artifact_dir=artifact_dir,
        source=source,
        manifest=manifest,
        uri=store.put(artifact_dir, model=model, manifest=manifest),
        gate=gate_decision.model_dump(mode="json"),
    )


@dataclass(frozen=True)
class _Candidate:
    """An accepted artifact being registered, already copied into the artifact store."""

    model: str
    artifact_dir: Path
    source: str  # where the artifact really is (a URI when artifact_dir is a fetched copy)
    manifest: ArtifactManifest
    uri: str
    gate: dict[str, Any]


def _add_version(
    db: Sessions,
    session: Session,
    model_row: ModelRow,
    candidate: _Candidate,
    *,
    actor: str,
    reason: str,
) -> VersionRow:
    """Insert the candidate as the next staging version, with its ``register`` ledger entry.

    Raises:
        RegistryConflictError: The artifact is already a version of the model.
    """
    manifest = candidate.manifest
    _refuse_duplicate(session, model_row, manifest=manifest, source=candidate.source)
    row = VersionRow(
        model_id=model_row.id,
        version=rows.next_version(session, model_row),
        stage=Stage.STAGING.value,
        artifact_uri=candidate.uri,
        digest=manifest.digest,
        files=manifest.files,
        card=manifest.card.model_dump(mode="json"),
        **card_columns(manifest.card),
        gate_decision=candidate.gate,
        created_by=actor[:128],
        created_at=utc_now(),
    )
    session.add(row)
    session.flush()
    db.step("version-inserted")
    evidence = {
        "source": candidate.source,
        "digest": manifest.digest,
        "gate": candidate.gate,
    }
    entry = Entry(
        action=Action.REGISTER,
        from_stage=None,
        to_stage=Stage.STAGING,
        actor=actor,
        reason=reason,
        evidence=evidence,
    )
    ledger.append(
        session, entry, model=model_row, version=row, operation_id=ledger.new_operation_id()
    )
    db.step("ledger-written")
    return row


def check_decision(
    gate_decision: GateEvidence, *, manifest: ArtifactManifest, artifact_dir: Path | str
) -> None:
    """Refuse a rejected candidate, or a decision made for another artifact.

    Raises:
        GateRejectedError: The decision rejected the candidate.
        ArtifactError: The decision is for another artifact (digest).
    """
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


def record_rejection(
    db: Sessions, *, model: str, gate_decision: GateEvidence, actor: str, artifact: str
) -> None:
    """Append a ``reject`` ledger entry (no version is created) for a rejected candidate."""
    VersionRef(model=model, version=1)  # validates the model name
    rows.ensure_model(db, model)
    entry = Entry(
        action=Action.REJECT,
        from_stage=None,
        to_stage=None,
        actor=actor,
        reason=f"evaluation gate rejected {artifact}: {gate_decision.summary()}",
        evidence={"source": artifact, "gate": gate_decision.model_dump(mode="json")},
    )
    with db.write("recording a gate rejection") as session:
        model_row = rows.model_row(session, model, lock=True)
        ledger.append(
            session, entry, model=model_row, version=None, operation_id=ledger.new_operation_id()
        )


def _export(
    db: Sessions,
    session: Session,
    row: VersionRow,
    candidate: _Candidate,
    *,
    bentoml_home: Path,
    exported: list[str],
) -> None:
    """Save the new version in BentoML and record its tag (appended to ``exported`` first)."""
    row.bento_tag = export_registered(
        bentoml_home, model=candidate.model, artifact_dir=candidate.artifact_dir, row=row
    )
    exported.append(row.bento_tag)
    session.flush()
    db.step("bento-exported")


def _refuse_duplicate(
    session: Session, model_row: ModelRow, *, manifest: ArtifactManifest, source: str
) -> None:
    """An artifact is registered once per model.

    Raises:
        RegistryConflictError: ``manifest``'s digest is already a version of the model.
    """
    duplicate = rows.digest_row(session, model_row, manifest.digest)
    if duplicate is not None:
        tag = f"{model_row.name}:v{duplicate.version}"
        raise RegistryConflictError(
            f"{source} is already registered as {tag} ({duplicate.stage}).",
            fix=f"use {tag}; an artifact is registered once.",
        )
