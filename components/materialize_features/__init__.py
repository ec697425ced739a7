"""Pipeline component: register the Feast objects over the current snapshot and materialise them.

Idempotent: applying the same definitions again changes nothing, and materialising writes the
same latest values again.
"""

from __future__ import annotations

from datetime import datetime

from metarec.components import component_settings
from pydantic import BaseModel, ConfigDict


class MaterializeOutput(BaseModel):
    """What the online store now holds (JSON-able)."""

    model_config = ConfigDict(frozen=True)

    snapshot_id: str
    objects: list[str]
    materialized_until: str


def materialize_features(*, home: str | None = None, end: str | None = None) -> MaterializeOutput:
    """Apply the feature definitions over the current snapshot, then materialise up to ``end``.

    Args:
        home: MetaRec home (default: the configured one).
        end: ISO-8601 end of the materialised window (default: now).

    Returns:
        The applied snapshot, the registered objects and the window end.
    """
    from metarec.data.snapshots import SnapshotStore
    from metarec.features.store import apply_features
    from metarec.features.store import materialize_features as materialize

    settings = component_settings(home)
    snapshot = SnapshotStore(settings.paths.snapshots).get()
    objects = apply_features(settings, snapshot)
    until = materialize(settings, end=datetime.fromisoformat(end) if end else None)
    return MaterializeOutput(
        snapshot_id=snapshot.snapshot_id, objects=objects, materialized_until=until.isoformat()
    )
