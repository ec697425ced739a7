"""The model card, typed on read: JSON from an artifact folder or the registry → ``ModelCard``.

Training writes ``model_card.json`` as a :class:`metarec.training.model_card.ModelCard`; the
registry reads it back as one, never as a ``dict``. A card that is not a valid ``ModelCard`` of
the format this MetaRec reads is refused with :class:`~metarec.errors.ArtifactError` naming the
first invalid fields.

``metarec.training.model_card`` holds the schema without torch, so importing the registry stays
cheap (listing versions, opening the API).
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError

from metarec.errors import ArtifactError
from metarec.training.model_card import FORMAT_VERSION, ModelCard

RETRAIN_FIX = "re-export the artifact with `metarec train` (the model card is written by training)."
_SHOWN_ERRORS = 3


def parse_card(data: Any, *, where: str, fix: str = RETRAIN_FIX) -> ModelCard:
    """Validate parsed card JSON as a :class:`~metarec.training.model_card.ModelCard`.

    Args:
        data: The parsed JSON (any value: a non-object is refused).
        where: The card's location (a file, or ``<model>:v<N>``), named in errors.
        fix: What the user should do about an invalid card.

    Returns:
        The typed card.

    Raises:
        ArtifactError: Not a JSON object, a format version this MetaRec does not read, or
            missing / invalid fields.
    """
    if not isinstance(data, dict):
        raise ArtifactError(f"{where} is not a JSON object.", fix=fix)
    found = data.get("format_version")
    if found != FORMAT_VERSION:
        raise ArtifactError(
            f"{where} has model card format_version {found!r}; this MetaRec reads "
            f"{FORMAT_VERSION}.",
            fix=fix,
        )
    try:
        return ModelCard.model_validate(data)
    except ValidationError as exc:
        raise ArtifactError(
            f"{where} is not a valid model card ({describe_errors(exc)}).", fix=fix
        ) from exc


def card_from_json(text: str | bytes, *, where: str, fix: str = RETRAIN_FIX) -> ModelCard:
    """Parse ``model_card.json`` text into a typed card.

    Args:
        text: The file's contents.
        where: The card's location, named in errors.
        fix: What the user should do about an invalid card.

    Raises:
        ArtifactError: Not JSON, or not a valid model card (see :func:`parse_card`).
    """
    try:
        data = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{where} is not valid JSON ({exc}).", fix=fix) from exc
    return parse_card(data, where=where, fix=fix)


def describe_errors(exc: ValidationError) -> str:
    """The first few validation errors of a card as ``field: message`` phrases."""
    phrases = [
        f"{'.'.join(str(part) for part in error['loc']) or 'card'}: {error['msg'].lower()}"
        for error in exc.errors()[:_SHOWN_ERRORS]
    ]
    more = exc.error_count() - len(phrases)
    return "; ".join(phrases) + (f"; and {more} more" if more > 0 else "")
