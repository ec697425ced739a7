"""Lineage: what a version's typed model card says about where it came from.

At registration the card's lineage fields are copied into columns of the version row (short,
indexed strings) and the whole card is stored beside them. On read, the stored card is parsed
into a :class:`~metarec.training.model_card.ModelCard` again for the training configuration,
metrics and held-out users. A stored card that is no longer a valid ``ModelCard`` (registered by
an older MetaRec) does not break reads: the lineage keeps its columns and says why the rest is
missing in ``card_error``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from metarec.clock import as_utc
from metarec.errors import ArtifactError
from metarec.registry.card import parse_card
from metarec.registry.schema import VersionRow
from metarec.registry.types import Lineage

if TYPE_CHECKING:
    from metarec.training.model_card import ModelCard

# Entries of the card copied into the training configuration as they are.
_CONFIG_KEYS = ("hyperparameters", "model", "inner_loop", "finetune")
STORED_CARD_FIX = (
    "re-register the version's artifact with a card written by this MetaRec "
    "(`metarec train`, then `metarec models register`)."
)


def card_columns(card: ModelCard) -> dict[str, str | None]:
    """The lineage columns of a version row, from its card (cut to the column widths)."""
    return {
        "algorithm": _short(card.algorithm, 64),
        "feature_service": _short(card.feature_service),
        "feature_service_version": _short(card.feature_service_version),
        "dataset_fingerprint": _short(card.dataset_fingerprint),
        "snapshot_id": _short(card.snapshot_id),
        "validation_result_id": _short(card.validation_result_id),
        "code_version": _short(code_version_text(card.code_version)),
    }


def code_version_text(value: dict[str, str | None]) -> str | None:
    """The card's code version as one string: ``metarec=0.1.0 git_commit=abc123``."""
    text = " ".join(f"{key}={item}" for key, item in value.items() if item is not None)
    return text or None


def training_config(card: ModelCard) -> dict[str, Any]:
    """Hyper-parameters, architecture, inner loop, fine-tuning, split and training summary.

    Long lists are left out: the split's user lists and the training history.
    """
    config: dict[str, Any] = {key: getattr(card, key) for key in _CONFIG_KEYS}
    config["split"] = {
        key: value for key, value in card.split.items() if not isinstance(value, list)
    }
    config["training"] = {key: value for key, value in card.training.items() if key != "history"}
    return config


def stored_card(row: VersionRow, *, tag: str) -> ModelCard:
    """The card stored with a version, typed.

    Raises:
        ArtifactError: The stored card is not a valid model card of this MetaRec's format.
    """
    return parse_card(row.card, where=f"the model card stored with {tag}", fix=STORED_CARD_FIX)


def lineage_of(row: VersionRow, *, tag: str) -> Lineage:
    """A version's lineage: its columns plus what its typed stored card adds."""
    columns = Lineage(
        algorithm=row.algorithm,
        feature_service=row.feature_service,
        feature_service_version=row.feature_service_version,
        dataset_fingerprint=row.dataset_fingerprint,
        snapshot_id=row.snapshot_id,
        validation_result_id=row.validation_result_id,
        code_version=row.code_version,
    )
    try:
        card = stored_card(row, tag=tag)
    except ArtifactError as exc:
        return columns.model_copy(update={"card_error": str(exc)})
    return columns.model_copy(
        update={
            "trained_at": as_utc(card.created_at).isoformat(),
            "training_config": training_config(card),
            "metrics": card.metrics,
            "test_users": card.test_users,
        }
    )


def _short(value: str | None, limit: int = 128) -> str | None:
    return None if value is None else value[:limit]
