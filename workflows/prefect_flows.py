"""Prefect 3 flows over MetaRec's components.

Tasks wrap the components unchanged (the same functions KFP wraps); retries only where a retry
can help (I/O against stores), never on a validation verdict.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, task

from metarec.components.build_training_set import build_training_set
from metarec.components.ingest_data import ingest_data
from metarec.components.materialize_features import materialize_features
from metarec.components.validate_features import validate_features

ingest_task = task(ingest_data, name="ingest", retries=2, retry_delay_seconds=5)
materialize_task = task(
    materialize_features, name="apply-and-materialize", retries=2, retry_delay_seconds=5
)
training_set_task = task(
    build_training_set, name="build-training-set", retries=1, retry_delay_seconds=5
)
validate_task = task(validate_features, name="validate-features")


@flow(name="materialize", log_prints=True)
def materialize_flow(
    source: str = "ml-100k",
    path: str | None = None,
    url: str | None = None,
    home: str | None = None,
) -> dict[str, Any]:
    """Ingest the source (skipped when unchanged), register features and load the online store.

    Args:
        source: ``ml-100k``, ``ml-1m`` or ``synthetic``.
        path: Local archive or folder.
        url: Archive URL (checksum verified) when no path is given.
        home: MetaRec home (default: the configured one).

    Returns:
        The snapshot id, whether it was reused, and the materialised window end.
    """
    ingested = ingest_task(source=source, path=path, url=url, home=home)
    applied = materialize_task(home=home)
    print(
        f"snapshot {ingested.snapshot_id} ({'unchanged' if ingested.reused else 'new'}); "
        f"online store as of {applied.materialized_until}"
    )
    return {
        "snapshot_id": ingested.snapshot_id,
        "reused": ingested.reused,
        "materialized_until": applied.materialized_until,
    }
