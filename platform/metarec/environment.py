"""The process environment MetaRec needs before Prefect, BentoML or Feast are imported.

Telemetry is switched off unless the settings allow it (users have firewalls; without these
switches Prefect and BentoML stall on their telemetry calls). Prefect's and BentoML's homes are
pointed into the MetaRec home, never at ``~``.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

from metarec.config import Settings

TELEMETRY_OFF = {
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "BENTOML_DO_NOT_TRACK": "true",
    "FEAST_USAGE": "False",
}


def process_environment(settings: Settings) -> dict[str, str]:
    """Return the environment variables MetaRec sets for itself and its child processes.

    Args:
        settings: The active settings.

    Returns:
        Variable name → value.
    """
    paths = settings.paths
    values = {
        "METAREC_HOME": str(paths.home),
        "PREFECT_HOME": str(paths.prefect_home),
        "BENTOML_HOME": str(paths.bentoml_home),
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
    }
    if not settings.telemetry:
        values.update(TELEMETRY_OFF)
    return values


MANAGED_MARKER = "METAREC_MANAGED_ENV"


def apply_process_environment(
    settings: Settings, *, environ: MutableMapping[str, str] | None = None
) -> None:
    """Set :func:`process_environment` in ``environ`` (default: ``os.environ``).

    Telemetry switches always win. A home variable (``PREFECT_HOME``, ``BENTOML_HOME``, …) the
    user set is kept; one MetaRec set itself (listed in ``METAREC_MANAGED_ENV``) follows the
    active MetaRec home, so several homes used in one process (tests, pipelines) never share
    a BentoML model store.

    Args:
        settings: The active settings.
        environ: The mapping to update.
    """
    target = os.environ if environ is None else environ
    managed = {name for name in target.get(MANAGED_MARKER, "").split(",") if name}
    for name, value in process_environment(settings).items():
        if name in TELEMETRY_OFF or name == "METAREC_HOME":
            target[name] = value
        elif name in managed or name not in target:
            target[name] = value
            managed.add(name)
    target[MANAGED_MARKER] = ",".join(sorted(managed))
