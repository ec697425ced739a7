"""``GET /healthz`` (liveness) and ``GET /readyz`` (readiness), the paths the chart probes.

Neither needs a token (the kubelet sends none). Liveness does not touch the database, so a
database outage makes the pods unready (out of the Service) instead of restarting them;
readiness runs one cheap query (``SELECT 1``) and answers 503 with a one-line reason when the
registry database does not answer.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from metarec.api.deps import Reg
from metarec.api.schemas import Health
from metarec.errors import RegistryError

router = APIRouter(tags=["health"])

UNAVAILABLE = {503: {"description": "The registry database does not answer."}}


@router.get("/healthz")
def healthz(reg: Reg) -> Health:
    """Liveness: the process answers (the database is not queried); names its dialect."""
    return Health(status="ok", database=reg.engine.dialect.name)


@router.get("/readyz", response_model=Health, responses=UNAVAILABLE)
def readyz(reg: Reg) -> Health | JSONResponse:
    """Readiness: 200 when the registry database answers ``SELECT 1``, else 503 and why."""
    try:
        database = reg.ping()
    except RegistryError as exc:
        reason = " ".join(exc.problem.split())
        return JSONResponse({"status": "unavailable", "reason": reason}, status_code=503)
    return Health(status="ok", database=database)
