"""``GET /healthz``."""

from __future__ import annotations

from fastapi import APIRouter

from metarec.api.deps import Reg
from metarec.api.schemas import Health

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz(reg: Reg) -> Health:
    """Liveness and readiness: the registry database answers."""
    return Health(status="ok", database=reg.ping())
