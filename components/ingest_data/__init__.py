"""Pipeline component: ingest a dataset into a new current snapshot.

Idempotent: when the current snapshot was ingested from the same input (same archive checksum,
same folder contents, or same synthetic spec), it is returned and nothing is written.
"""

from __future__ import annotations

from pathlib import Path

from metarec.components import component_settings
from pydantic import BaseModel, ConfigDict


class IngestOutput(BaseModel):
    """The snapshot an ingest produced or reused (JSON-able)."""

    model_config = ConfigDict(frozen=True)

    snapshot_id: str
    snapshot_path: str
    source: str
    interactions: int
    input_checksum: str
    reused: bool


def ingest_data(
    *,
    source: str,
    path: str | None = None,
    url: str | None = None,
    checksum: str | None = None,
    seed: int = 0,
    schema: str | None = None,
    home: str | None = None,
) -> IngestOutput:
    """Ingest ``source`` (``ml-100k``, ``ml-1m``, ``synthetic`` or ``table``) into the MetaRec home.

    Args:
        source: Dataset layout.
        path: Local archive or folder (MovieLens sources).
        url: Archive URL when ``path`` is not given (checksum verified).
        checksum: Expected checksum of the download.
        seed: Synthetic generator seed.
        schema: The schema YAML of a ``table`` source (its tables are read from where it says).
        home: MetaRec home (default: the configured one).

    Returns:
        The current snapshot after the ingest.

    Raises:
        MetaRecError: Bad input; the previous snapshot stays current.
    """
    from metarec.data.ingest import DataSource
    from metarec.data.synthetic import SyntheticSpec
    from metarec.ops.ingestion import ingest

    result = ingest(
        component_settings(home),
        source=DataSource(source),
        path=Path(path) if path else None,
        url=url,
        checksum=checksum,
        synthetic=SyntheticSpec(seed=seed),
        schema=Path(schema) if schema else None,
        reuse_unchanged=True,
    )
    info = result.snapshot
    return IngestOutput(
        snapshot_id=info.snapshot_id,
        snapshot_path=str(info.path),
        source=info.source,
        interactions=info.row_counts.get("interactions", 0),
        input_checksum=info.metadata.get("input_checksum", ""),
        reused=result.reused,
    )
