"""Reads: models, versions, production, the ledger."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from metarec.api.deps import READ, ModelName, Reg, VersionNumber
from metarec.errors import VersionNotFoundError
from metarec.registry.types import LedgerEntry, ModelSummary, Stage, VersionInfo, VersionRef

router = APIRouter(dependencies=READ)


@router.get("/models", tags=["models"])
def list_models(reg: Reg) -> list[ModelSummary]:
    """Every registered model with its version count and production version."""
    return reg.list_models()


@router.get("/models/{model}/versions", tags=["models"])
def list_versions(
    reg: Reg, model: ModelName, stage: Annotated[Stage | None, Query()] = None
) -> list[VersionInfo]:
    """The versions of a model, oldest first (optionally of one stage)."""
    return reg.list_versions(model, stage=stage)


@router.get("/models/{model}/versions/{version}", tags=["models"])
def show_version(reg: Reg, model: ModelName, version: VersionNumber) -> VersionInfo:
    """One version with its lineage and gate decision."""
    return reg.get_version(VersionRef(model=model, version=version))


@router.get("/models/{model}/production", tags=["models"])
def production(reg: Reg, model: ModelName) -> VersionInfo:
    """The production version of a model (404 when there is none)."""
    info = reg.production(model)
    if info is None:
        reg.list_versions(model)  # 404 for an unknown model
        raise VersionNotFoundError(
            f"Model {model!r} has no production version.",
            fix=f"promote one: POST /models/{model}/versions/{{version}}/promote.",
        )
    return info


@router.get("/models/{model}/history", tags=["ledger"])
def history(
    reg: Reg,
    model: ModelName,
    version: Annotated[int | None, Query(ge=1, le=1_000_000_000)] = None,
) -> list[LedgerEntry]:
    """The append-only ledger of a model (optionally of one version), oldest first."""
    return reg.history(model, version=version)
