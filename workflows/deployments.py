"""Prefect deployments of MetaRec's flows, with cron schedules from the settings."""

from __future__ import annotations

from typing import Any

from metarec.config import Settings
from metarec.workflows.prefect_flows import materialize_flow, retrain_flow


def local_deployments(settings: Settings) -> list[Any]:
    """Deployments for ``prefect.serve``: materialize and retrain on their cron schedules."""
    import yaml

    home = str(settings.paths.home)
    workflows = settings.workflows
    training_config = (
        yaml.safe_load(workflows.training_config.read_text()) if workflows.training_config else None
    )
    return [
        materialize_flow.to_deployment(
            name="materialize",
            cron=workflows.materialize_cron,
            parameters={"source": workflows.source, "path": workflows.source_path, "home": home},
        ),
        retrain_flow.to_deployment(
            name="retrain",
            cron=workflows.retrain_cron,
            parameters={"home": home, "training_config": training_config},
        ),
    ]
