"""Stage transitions a person or a pipeline asks for: promote, roll back, archive.

Each is one registry transaction; the use case adds what the faces print and answer with: the
version that was in production before (so "v2 archived" can be said) and the new state.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict

from metarec.config import Settings
from metarec.ops._registry import registry_session
from metarec.registry import UNSET, Registry, VersionInfo, VersionRef


class Transition(BaseModel):
    """What a transition did: the version it moved and production before and after."""

    model_config = ConfigDict(frozen=True)

    version: VersionInfo
    production_before: int | None
    production_after: int | None


def promote(
    settings: Settings,
    *,
    ref: VersionRef,
    actor: str,
    reason: str,
    evidence: dict[str, Any] | None = None,
    expected_production: Any = UNSET,
    registry: Registry | None = None,
) -> Transition:
    """Promote ``ref`` to production; the previous production version is archived.

    Args:
        settings: MetaRec settings (the registry).
        ref: The version to promote (staging, or archived to re-promote).
        actor: Who promotes (kept in the ledger).
        reason: Why (kept in the ledger).
        evidence: JSON evidence kept in the ledger (a canary verdict, a report link).
        expected_production: The production version the decision is based on (None: none);
            default: the one in production when the call starts.
        registry: An open registry (default: open the configured one for this call).

    Returns:
        The promoted version and production before and after.

    Raises:
        RegistryConflictError: Production changed since ``expected_production``.
        InvalidTransitionError: The version is already in production.
        VersionNotFoundError / ModelNotFoundError: No such version.
    """
    return _transition(
        settings,
        registry,
        ref.model,
        lambda current: current.promote(
            ref,
            actor=actor,
            reason=reason,
            evidence=evidence,
            expected_production=expected_production,
        ),
    )


def rollback(
    settings: Settings,
    *,
    model: str,
    actor: str,
    reason: str,
    evidence: dict[str, Any] | None = None,
    expected_production: Any = UNSET,
    registry: Registry | None = None,
) -> Transition:
    """Promote the previous production version of ``model`` again (the current is archived).

    Args:
        settings: MetaRec settings (the registry).
        model: Registered model name.
        actor: Who rolls back (kept in the ledger).
        reason: Why (kept in the ledger).
        evidence: JSON evidence kept in the ledger.
        expected_production: As in :func:`promote`.
        registry: An open registry (default: open the configured one for this call).

    Returns:
        The version now in production again, and production before and after.

    Raises:
        VersionNotFoundError: There is no earlier production version to return to.
        RegistryConflictError: Production changed concurrently.
    """
    return _transition(
        settings,
        registry,
        model,
        lambda current: current.rollback(
            model,
            actor=actor,
            reason=reason,
            evidence=evidence,
            expected_production=expected_production,
        ),
    )


def archive(
    settings: Settings,
    *,
    ref: VersionRef,
    actor: str,
    reason: str,
    evidence: dict[str, Any] | None = None,
    registry: Registry | None = None,
) -> Transition:
    """Archive a staging or production version (archiving production leaves none).

    Args:
        settings: MetaRec settings (the registry).
        ref: The version to archive.
        actor: Who archives (kept in the ledger).
        reason: Why (kept in the ledger).
        evidence: JSON evidence kept in the ledger.
        registry: An open registry (default: open the configured one for this call).

    Returns:
        The archived version and production before and after.

    Raises:
        InvalidTransitionError: The version is already archived.
        VersionNotFoundError / ModelNotFoundError: No such version.
    """
    return _transition(
        settings,
        registry,
        ref.model,
        lambda current: current.archive(ref, actor=actor, reason=reason, evidence=evidence),
    )


def _transition(
    settings: Settings,
    registry: Registry | None,
    model: str,
    move: Callable[[Registry], VersionInfo],
) -> Transition:
    """Run one stage move; the moved version and ``model``'s production before and after."""
    with registry_session(settings, registry) as current:
        before = current.production_version(model)
        info = move(current)
        after = current.production_version(model)
    return Transition(version=info, production_before=before, production_after=after)
