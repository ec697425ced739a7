"""MetaRec pipeline components: thin, typed, idempotent faces over the platform code.

Prefect tasks and KFP components wrap these functions; none of them imports Prefect or KFP.
"""

from __future__ import annotations

from pathlib import Path

from metarec.config import Settings, load_settings
from metarec.environment import apply_process_environment


def component_settings(home: str | None) -> Settings:
    """Settings of the given MetaRec home (default: the configured one), environment prepared.

    Telemetry is switched off and the tool homes point into the MetaRec home.
    """
    settings = load_settings(home=Path(home)) if home else load_settings()
    apply_process_environment(settings)
    return settings
