"""Model registry: versions, stages (staging → production → archived) and the ledger.

Use :meth:`Registry.open` with the settings; everything else is a method of the registry.
"""

from metarec.registry.service import UNSET, Registry
from metarec.registry.types import (
    Action,
    LedgerEntry,
    Lineage,
    ModelSummary,
    Stage,
    VersionInfo,
    VersionRef,
)

__all__ = [
    "UNSET",
    "Action",
    "LedgerEntry",
    "Lineage",
    "ModelSummary",
    "Registry",
    "Stage",
    "VersionInfo",
    "VersionRef",
]
