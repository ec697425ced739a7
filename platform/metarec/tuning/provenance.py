"""Which study and trial chose a candidate: recorded in its model card before the gate.

The card's ``training`` section (free-form: how the run was trained) gains a ``tuning`` entry:
the study name, the trial number, the objective and its value on the validation users, and the
chosen parameters. It is written before the candidate is gated and registered, so the
registered version's card carries it (the card's weights checksums are unchanged).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from metarec.training.artifact import CARD, read_card
from metarec.training.model_card import ModelCard


class TuningProvenance(BaseModel):
    """The card's ``training.tuning`` entry."""

    model_config = ConfigDict(frozen=True)

    study: str
    trial: int
    objective: str
    value: float
    params: dict[str, Any]


def stamp_card(artifact: Path, provenance: TuningProvenance) -> ModelCard:
    """Record ``provenance`` in the card of the local artifact folder ``artifact``.

    The card is rewritten atomically (a temporary file renamed over it) and read back checked.

    Returns:
        The card as written.
    """
    path = Path(artifact) / CARD
    data = json.loads(path.read_text())
    data.setdefault("training", {})["tuning"] = provenance.model_dump(mode="json")
    ModelCard.model_validate(data)  # still a valid card before it replaces the old one
    tmp = path.with_name(f".{CARD}.tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)
    return read_card(Path(artifact))


def card_provenance(card: ModelCard) -> TuningProvenance | None:
    """The tuning entry of ``card`` (None: not chosen by a study)."""
    entry = card.training.get("tuning")
    return None if entry is None else TuningProvenance.model_validate(entry)
