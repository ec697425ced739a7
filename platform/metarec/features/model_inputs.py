"""The model's input fields, read off the training feature service (Feast's schema and tags).

Every field of a ``user`` or ``item`` feature view in ``meta_training`` is a model input, encoded
by its type unless a tag says otherwise:

* ``String`` (or a declared ``category``) → ``categorical``: an embedding with a learnt vocabulary;
* ``Int*`` / ``Float*`` / ``Bool`` (declared ``int`` / ``float``) → ``numeric``: standardised;
* ``Array(String)`` / ``Array(Int*)`` (declared ``category_list``) → ``bag``: mean of embeddings;
* ``Array(Float*)`` (declared ``vector``) → ``vector``: a linear projection.

The Feast field tag ``metarec.encoding`` overrides the type's choice: one of the encodings
above, ``bucket:N`` (a number cut into ``N``-wide buckets, then categorical) or ``skip`` (not an
input); ``metarec.separator`` names the joiner of a bag stored as text. Views of other entities
(the label views) are never inputs. The training config can override any field again
(:class:`metarec.training.config.TrainingConfig`'s ``inputs``).
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from typing import Literal

from feast import FeatureService, FeatureStore, Field
from feast.types import Array, PrimitiveFeastType
from pydantic import BaseModel, ConfigDict
from pydantic import Field as PydanticField

from metarec.data.table_schema import FeatureType
from metarec.features.declared import DeclaredFeature

ENCODING_TAG = "metarec.encoding"
SEPARATOR_TAG = "metarec.separator"
# A view's side, by its entity's join key (or, before ``feast apply`` infers keys, its name).
SIDES = {"user_id": "user", "item_id": "item", "user": "user", "item": "item"}
Side = Literal["user", "item"]


class Encoding(StrEnum):
    """How a feature becomes part of the model's input."""

    CATEGORICAL = "categorical"
    NUMERIC = "numeric"
    BAG = "bag"
    VECTOR = "vector"
    BUCKET = "bucket"
    SKIP = "skip"


class InputField(BaseModel):
    """One feature of the training service as the model reads it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    view: str
    side: Side
    encoding: Encoding
    separator: str = "|"  # bag: the joiner when values are stored as text
    bucket_width: float | None = PydanticField(default=None, gt=0)  # bucket: the bucket width
    dim: int | None = PydanticField(default=None, ge=1)  # vector: the declared length


_DECLARED = {
    FeatureType.CATEGORY: Encoding.CATEGORICAL,
    FeatureType.INT: Encoding.NUMERIC,
    FeatureType.FLOAT: Encoding.NUMERIC,
    FeatureType.CATEGORY_LIST: Encoding.BAG,
    FeatureType.VECTOR: Encoding.VECTOR,
}
_NUMERIC = {"INT32", "INT64", "FLOAT32", "FLOAT64", "BOOL"}
_CATEGORY_ITEMS = {"STRING", "INT32", "INT64"}
_VECTOR_ITEMS = {"FLOAT32", "FLOAT64"}


def parse_encoding(text: str) -> tuple[Encoding, float | None]:
    """``"bucket:5"`` → ``(BUCKET, 5.0)``; ``"numeric"`` → ``(NUMERIC, None)``.

    Raises:
        ValueError: The text names no encoding, or a bucket has no positive width.
    """
    name, _, width = text.strip().partition(":")
    encoding = Encoding(name.strip().lower())
    if encoding is not Encoding.BUCKET:
        return encoding, None
    size = float(width) if width.strip() else 0.0
    if size <= 0:
        raise ValueError(f"bucket needs a positive width, as in bucket:5 (got {text!r})")
    return encoding, size


def type_encoding(field: Field) -> Encoding:
    """The encoding a Feast field's type implies (``skip`` for a type the model cannot read)."""
    dtype = field.dtype
    if isinstance(dtype, Array):
        base = getattr(dtype.base_type, "name", "")
        if base in _VECTOR_ITEMS:
            return Encoding.VECTOR
        return Encoding.BAG if base in _CATEGORY_ITEMS else Encoding.SKIP
    if isinstance(dtype, PrimitiveFeastType):
        if dtype.name == "STRING":
            return Encoding.CATEGORICAL
        return Encoding.NUMERIC if dtype.name in _NUMERIC else Encoding.SKIP
    return Encoding.SKIP


def field_input(
    field: Field, *, view: str, side: Side, declared: DeclaredFeature | None
) -> InputField | None:
    """The input a field becomes, or None when it is skipped.

    A ``metarec.encoding`` tag wins, then the declared type, then the Feast type.
    """
    tags = field.tags or {}
    width = None
    if ENCODING_TAG in tags:
        encoding, width = parse_encoding(tags[ENCODING_TAG])
    elif declared is not None:
        encoding = _DECLARED[declared.type]
    else:
        encoding = type_encoding(field)
    if encoding is Encoding.SKIP:
        return None
    separator = tags.get(SEPARATOR_TAG, declared.separator if declared else "|")
    return InputField(
        name=field.name,
        view=view,
        side=side,
        encoding=encoding,
        separator=separator,
        bucket_width=width,
        dim=declared.dim if declared is not None else None,
    )


def service_inputs(
    store: FeatureStore, service: FeatureService, *, declared: Iterable[DeclaredFeature] = ()
) -> list[InputField]:
    """The model inputs of a feature service, in the service's order.

    Args:
        store: The store the service is registered in (for each view's entity).
        service: Usually ``meta_training``.
        declared: The snapshot's declared features (their types decide before Feast's).

    Returns:
        One :class:`InputField` per user or item feature that is not skipped; a name is kept
        once (its first view).
    """
    by_name = {feature.name: feature for feature in declared}
    inputs: list[InputField] = []
    seen: set[str] = set()
    for projection in service.feature_view_projections:
        view = store.get_feature_view(projection.name)
        keys = view.join_keys or view.entities
        sides = {SIDES[key] for key in keys if key in SIDES}
        if len(sides) != 1 or len(keys) != 1:
            continue  # label views (keyed by interaction) and multi-entity views
        side: Side = sides.pop()  # type: ignore[assignment]
        for field in projection.features:
            if field.name in seen:
                continue
            found = field_input(
                field, view=projection.name, side=side, declared=by_name.get(field.name)
            )
            if found is not None:
                inputs.append(found)
                seen.add(field.name)
    return inputs
