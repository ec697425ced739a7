"""Checks of a request against the served version and the limits: id kinds, known items, counts.

Ids are the version's kind: integers, or a team's text ids (``c001``, ``sku-001``) for a version
trained on them. An id of the other kind is refused (400) naming the field, an unknown item
(422) likewise, and the version must agree with the online store's ids (else the engine refuses
to start). Every check raises :class:`~metarec.errors.ServingInputError` before any work is
queued.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from metarec.errors import ServingInputError, ServingModelError
from metarec.features.store import EntityId
from metarec.serving.features import ItemMatrix


def shown(value: EntityId) -> str:
    """An id as an answer shows it: ``7``, or a text id quoted (``'c001'``)."""
    return repr(value) if isinstance(value, str) else str(value)


def id_kind(text: bool) -> Literal["text", "integer"]:
    """The kind of a side's ids, as ``/metadata`` names it."""
    return "text" if text else "integer"


def check_store_ids(features: Any, *, tag: str, text_users: bool, text_items: bool) -> None:
    """The online store keys users and items by the version's kind of id.

    Args:
        features: The feature cache (its ``text_users``/``text_items`` when it has them; else
            the version's kind of user ids and the item matrix's kind of item ids).
        tag: The version's tag, for the message.
        text_users: Whether the version was trained on text user ids.
        text_items: Whether the version was trained on text item ids.

    Raises:
        ServingModelError: A text-id version over a store of integer ids, or the reverse.
    """
    items = features.items
    store = {
        "user": getattr(features, "text_users", text_users),
        "item": getattr(features, "text_items", items.item_ids.dtype == np.dtype(object)),
    }
    for side, text in (("user", text_users), ("item", text_items)):
        if store[side] != text:
            raise ServingModelError(
                f"Version {tag} was trained on {id_kind(text)} {side} ids, and "
                f"the online store's {side} ids are {id_kind(store[side])}.",
                fix="apply and materialise the features of the snapshot the version was "
                "trained on (`metarec features apply`, `metarec features materialize`), or "
                "serve a version trained on this store's data.",
            )


def check_id(field: str, side: str, value: EntityId, *, text: bool) -> None:
    """A request's id is the version's kind (``text``: text ids, else integers).

    Raises:
        ServingInputError: (400) The other kind of id, naming ``field``.
    """
    if isinstance(value, str) == text:
        return
    if text:
        raise ServingInputError(
            field,
            f"{side} id {value} is a number, and this version's {side} ids are text.",
            fix=f'send the {side}\'s text id as a JSON string (e.g. "{value}"; GET '
            f"/metadata {side}_ids).",
            status=400,
        )
    raise ServingInputError(
        field,
        f"{side} id {value!r} is not an integer, and this version's {side} ids are.",
        fix=f"send the {side}'s integer id (GET /metadata {side}_ids).",
        status=400,
    )


def item_rows(
    items: ItemMatrix, field: str, item_ids: Sequence[EntityId], *, text_items: bool
) -> np.ndarray:
    """The item matrix's rows of ``item_ids``.

    Raises:
        ServingInputError: (400) An id of the other kind, or (422) an unknown item; the field
            is ``field[n]``.
    """
    index = items.index
    rows = np.empty(len(item_ids), dtype=np.int64)
    for n, item in enumerate(item_ids):
        row = index.get(item)
        if row is None:  # the other kind of id is never in the index: a 400 says why
            check_id(f"{field}[{n}]", "item", item, text=text_items)
            raise ServingInputError(
                f"{field}[{n}]",
                f"item {shown(item)} is unknown (it has no features in the online store).",
                fix="send item ids of the catalogue (see GET /metadata n_items), or "
                "materialise the item's features.",
                status=422,
            )
        rows[n] = row
    return rows


def check_count(field: str, n: int, limit: int) -> None:
    """At most ``limit`` entries in ``field``.

    Raises:
        ServingInputError: (422) More, naming ``field``.
    """
    if n > limit:
        raise ServingInputError(
            field,
            f"{n} entries exceed the limit of {limit}.",
            fix=f"send at most {limit} (serving settings), or split the request.",
            status=422,
        )


def item_field(exc: ServingInputError, suffix: str) -> ServingInputError:
    """``support[3]`` → ``support[3].item_id`` for unknown support (or feedback) items."""
    if exc.field.startswith(("support[", "events[")) and exc.field.endswith("]"):
        return ServingInputError(
            f"{exc.field}.{suffix}", exc.problem.split(": ", 1)[-1], fix=exc.fix, status=exc.status
        )
    return exc
