"""Encode training-set rows (Feast features) into the model's input rows.

The inputs are the feature service's fields (:mod:`metarec.features.model_inputs`), each encoded
by its kind into columns of one float32 row:

* ``categorical`` (and ``bucket``, a number cut into fixed-width buckets): one column holding a
  code from 1 up; 0 is "unknown" (and a value too few users share, see ``min_users``);
* the optional ``user_id`` / ``item_id`` fields: categorical codes of the ids themselves;
* ``bag`` (a list of categories, as a list or joined text): up to ``width`` codes padded with 0;
* ``numeric``: one standardised column (0 where missing); ``vector``: ``width`` raw columns.

Categorical fields come first (then the ids, bags and dense fields), so a categorical field's
column is its position in :attr:`FeatureEncoder.field_names`. Codes are whole numbers well below
2**24, exact in float32. Vocabularies and statistics are JSON-able and travel in the model card:
the model can be rebuilt and fed without the data.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import cached_property
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, model_validator

from metarec.errors import ModelInputsError
from metarec.features.model_inputs import Encoding, InputField, parse_encoding
from metarec.learning.model import ModelConfig

UNKNOWN = "unknown"
Kind = Literal["categorical", "bag", "numeric", "vector"]
CODED: tuple[Kind, ...] = ("categorical", "bag")
DENSE: tuple[Kind, ...] = ("numeric", "vector")
LEGACY_USER_FIELDS = ("gender", "age_bucket", "occupation", "zip_prefix")


def _field(name: str, view: str, side: str, encoding: Encoding, **extra: Any) -> InputField:
    return InputField(name=name, view=view, side=side, encoding=encoding, **extra)  # type: ignore[arg-type]


# The inputs of MetaRec's MovieLens feature service (what a training set without a recorded
# input list, or a legacy card, is read with).
MOVIELENS_INPUTS = (
    *(_field(n, "user_profile", "user", Encoding.CATEGORICAL) for n in LEGACY_USER_FIELDS),
    _field("release_year", "item_profile", "item", Encoding.BUCKET, bucket_width=5),
    _field("genres", "item_profile", "item", Encoding.BAG, separator="|"),
)


class EncodedField(BaseModel):
    """One field's columns in an encoded row, and what encoding it needs (vocabulary, stats)."""

    model_config = ConfigDict(frozen=True)

    name: str
    side: Literal["user", "item"]
    kind: Kind
    view: str | None = None  # the Feast view it is read from (None: an id field)
    start: int
    width: int = 1
    vocabulary: list[str] = []  # categorical, bag
    bucket_width: float | None = None  # categorical cut from a number
    separator: str = "|"  # bag stored as text
    mean: float = 0.0  # numeric
    std: float = 1.0  # numeric

    @cached_property
    def codes(self) -> dict[str, int]:
        """Value → code (1 up) of a categorical field or bag; built once per field."""
        return {v: i + 1 for i, v in enumerate(self.vocabulary)}

    @property
    def size(self) -> int:
        """Vocabulary size with code 0 (categorical, bag)."""
        return len(self.vocabulary) + 1

    @property
    def columns(self) -> list[int]:
        """Column indices of the field in an encoded row."""
        return list(range(self.start, self.start + self.width))

    def describe(self) -> dict[str, Any]:
        """A short public description (name, side, kind, view, width, vocabulary size)."""
        out: dict[str, Any] = {"name": self.name, "side": self.side, "kind": self.kind}
        out.update(view=self.view, width=self.width)
        if self.kind in CODED:
            out["vocabulary_size"] = len(self.vocabulary)
        return out


class FeatureEncoder(BaseModel):
    """The fields of an encoded row, in column order, with their vocabularies and statistics."""

    model_config = ConfigDict(frozen=True)

    fields: list[EncodedField]

    @model_validator(mode="before")
    @classmethod
    def _legacy_card(cls, data: Any) -> Any:
        """Read a card written before fields followed the feature service."""
        if isinstance(data, dict) and "field_names" in data:
            return {"fields": _legacy_fields(data)}
        return data

    # -- layout ---------------------------------------------------------------------------

    @property
    def width(self) -> int:
        """Columns of an encoded row."""
        return sum(f.width for f in self.fields)

    @property
    def field_names(self) -> list[str]:
        """Categorical fields in column order (a field's position is its column)."""
        return [f.name for f in self.fields if f.kind == "categorical"]

    @property
    def vocabularies(self) -> dict[str, list[str]]:
        """Vocabulary of each categorical field."""
        return {f.name: f.vocabulary for f in self.fields if f.kind == "categorical"}

    def select(self, *, side: str | None = None, kinds: Iterable[Kind] = ()) -> list[EncodedField]:
        """Fields of one side and/or of the given kinds (all when not given), in column order."""
        wanted = set(kinds)
        return [
            f
            for f in self.fields
            if (side is None or f.side == side) and (not wanted or f.kind in wanted)
        ]

    def columns(self, fields: Iterable[EncodedField]) -> list[int]:
        """The column indices of ``fields``, in their order."""
        return [column for f in fields for column in f.columns]

    # -- fitting --------------------------------------------------------------------------

    @classmethod
    def fit(
        cls,
        df: pd.DataFrame,
        *,
        inputs: Sequence[InputField] = MOVIELENS_INPUTS,
        id_rows: pd.DataFrame | None = None,
        use_user_id: bool = False,
        use_item_id: bool = False,
        min_users: int = 1,
        min_item_ratings: int = 1,
    ) -> FeatureEncoder:
        """Learn vocabularies and statistics.

        Args:
            df: The whole training set (bag vocabularies and widths, vector widths).
            inputs: The model's input fields (the training set's recorded ones).
            id_rows: Rows the model learns from (meta-training rows); values and ids absent
                from them encode as unknown, and numeric statistics come from them. Defaults
                to ``df``.
            use_user_id: Add a ``user_id`` field.
            use_item_id: Add an ``item_id`` field.
            min_users: A user-side category needs this many distinct users in ``id_rows``.
            min_item_ratings: An item id needs this many ratings in ``id_rows``.

        Raises:
            ModelInputsError: An input column is missing from ``df``.
        """
        id_rows = df if id_rows is None else id_rows
        missing = [f.name for f in inputs if f.name not in df.columns]
        if missing:
            raise ModelInputsError(
                f"The training set lacks the input columns {', '.join(missing)}.",
                fix="rebuild it with `metarec features training-set` after `features apply`.",
            )
        specs: list[dict[str, Any]] = []
        for field in inputs:
            if field.encoding in (Encoding.CATEGORICAL, Encoding.BUCKET):
                least = min_users if field.side == "user" else 1
                specs.append(_categorical(field, id_rows, least=least))
        if use_user_id:
            ids = sorted(id_rows["user_id"].unique())
            specs.append(_id_spec("user_id", "user", [str(v) for v in ids]))
        if use_item_id:
            counts = id_rows["item_id"].value_counts()
            kept = sorted(counts[counts >= min_item_ratings].index)
            specs.append(_id_spec("item_id", "item", [str(v) for v in kept]))
        specs += [_bag(f, df) for f in inputs if f.encoding is Encoding.BAG]
        specs += [_numeric(f, id_rows) for f in inputs if f.encoding is Encoding.NUMERIC]
        specs += [_vector(f, df) for f in inputs if f.encoding is Encoding.VECTOR]
        start, fields = 0, []
        for spec in specs:
            fields.append(EncodedField(start=start, **spec))
            start += fields[-1].width
        return cls(fields=fields)

    # -- encoding -------------------------------------------------------------------------

    def encode(self, df: pd.DataFrame) -> np.ndarray:
        """Encode rows into a float32 array (N, width).

        A column ``df`` lacks reads as missing everywhere (unknown codes, zeros), so a frame of
        item features alone encodes the item columns.
        """
        out = np.zeros((len(df), self.width), dtype=np.float32)
        for field in self.fields:
            column = df[field.name] if field.name in df.columns else pd.Series([None] * len(df))
            span = slice(field.start, field.start + field.width)
            if field.kind == "categorical":
                out[:, field.start] = _codes(field, column)
            elif field.kind == "bag":
                out[:, span] = _bag_codes(field, column)
            elif field.kind == "numeric":
                values = pd.to_numeric(column, errors="coerce").to_numpy(np.float64)
                scaled = (values - field.mean) / field.std
                out[:, field.start] = np.nan_to_num(scaled, nan=0.0)
            else:
                out[:, span] = _vectors(field, column)
        return out

    def describe(self) -> list[dict[str, Any]]:
        """The input fields for people (``/metadata``, ``models show``)."""
        return [f.describe() for f in self.fields]

    def model_config_for(
        self,
        *,
        embedding_dim: int,
        hidden: tuple[int, ...],
        output_bias: float,
        meta_sgd: bool,
        inner_lr_init: float,
        item_bias: bool = False,
    ) -> ModelConfig:
        """The :class:`ModelConfig` matching this encoding."""
        categorical = self.select(kinds=("categorical",))
        return ModelConfig(
            field_names=tuple(f.name for f in categorical),
            field_sizes=tuple(f.size for f in categorical),
            bags=tuple((f.size, f.width) for f in self.select(kinds=("bag",))),
            dense_widths=tuple(f.width for f in self.select(kinds=DENSE)),
            embedding_dim=embedding_dim,
            hidden=hidden,
            output_bias=output_bias,
            meta_sgd=meta_sgd,
            inner_lr_init=inner_lr_init,
            bias_fields=("item_id",) if item_bias and "item_id" in self.field_names else (),
        )


def with_overrides(
    inputs: Sequence[InputField], overrides: dict[str, str]
) -> tuple[InputField, ...]:
    """``inputs`` with the training config's per-field encodings (``skip`` drops a field).

    Args:
        inputs: The recorded input fields.
        overrides: Field name → encoding text (``numeric``, ``bucket:10``, ``skip`` …).

    Raises:
        ModelInputsError: An override names no input field, or no encoding.
    """
    known = {f.name for f in inputs}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ModelInputsError(
            f"The training config overrides {', '.join(unknown)}, which the training set's "
            f"inputs do not have (inputs: {', '.join(sorted(known)) or 'none'}).",
            fix="name a field of the meta_training feature service under `inputs:`.",
        )
    out = []
    for field in inputs:
        if field.name not in overrides:
            out.append(field)
            continue
        try:
            encoding, width = parse_encoding(overrides[field.name])
        except ValueError as exc:
            raise ModelInputsError(
                f"The training config's inputs.{field.name} is not an encoding ({exc}).",
                fix="use categorical, numeric, bag, vector, bucket:N or skip.",
            ) from None
        if encoding is not Encoding.SKIP:
            out.append(field.model_copy(update={"encoding": encoding, "bucket_width": width}))
    return tuple(out)


def bucket_labels(values: pd.Series, width: float) -> pd.Series:
    """``width``-wide bucket labels ("1995"), ``"unknown"`` where the value is missing."""
    numbers = pd.to_numeric(values, errors="coerce")
    labels = (numbers // width * width).astype("Int64").astype("string")
    return labels.fillna(UNKNOWN)


def _labels(field: EncodedField | InputField, column: pd.Series) -> pd.Series:
    if field.bucket_width is not None:
        return bucket_labels(column, field.bucket_width)
    return column.astype("string").fillna(UNKNOWN)


def _categorical(field: InputField, rows: pd.DataFrame, *, least: int) -> dict[str, Any]:
    # A value shared by too few users (a 3-digit zip prefix often is) would act as a user id
    # the model memorises; it encodes as unknown instead.
    labels = pd.DataFrame({"value": _labels(field, rows[field.name]), "user": rows["user_id"]})
    owners = labels.groupby("value")["user"].nunique()
    keep = owners[owners >= least].index
    return {
        "name": field.name,
        "side": field.side,
        "kind": "categorical",
        "view": field.view,
        "vocabulary": sorted(str(v) for v in keep),
        "bucket_width": field.bucket_width,
    }


def _id_spec(name: str, side: str, vocabulary: list[str]) -> dict[str, Any]:
    return {"name": name, "side": side, "kind": "categorical", "vocabulary": vocabulary}


def _split(value: Any, separator: str) -> list[str]:
    """A bag's members: a list/array as it is, text split at ``separator``."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return []
    if isinstance(value, str):
        return [v for v in value.split(separator) if v]
    return [str(v) for v in value if v is not None and str(v)]


def _bag(field: InputField, df: pd.DataFrame) -> dict[str, Any]:
    members = [_split(v, field.separator) for v in df[field.name].to_numpy()]
    vocabulary = sorted({m for ms in members for m in ms})
    width = max(1, max((len(ms) for ms in members), default=1))
    return {
        "name": field.name,
        "side": field.side,
        "kind": "bag",
        "view": field.view,
        "width": width,
        "vocabulary": vocabulary,
        "separator": field.separator,
    }


def _numeric(field: InputField, rows: pd.DataFrame) -> dict[str, Any]:
    values = pd.to_numeric(rows[field.name], errors="coerce").to_numpy(np.float64)
    finite = values[np.isfinite(values)]
    mean = float(finite.mean()) if len(finite) else 0.0
    std = float(finite.std()) if len(finite) else 1.0
    return {
        "name": field.name,
        "side": field.side,
        "kind": "numeric",
        "view": field.view,
        "mean": mean,
        "std": std if std > 0 else 1.0,
    }


def _vector(field: InputField, df: pd.DataFrame) -> dict[str, Any]:
    width = field.dim
    if width is None:
        first = next((v for v in df[field.name].to_numpy() if _is_vector(v)), None)
        if first is None:
            raise ModelInputsError(
                f"The vector feature {field.name} has no value in the training set.",
                fix=f"fill {field.name}, or skip it: `inputs: {{{field.name}: skip}}`.",
            )
        width = len(first)
    return {
        "name": field.name,
        "side": field.side,
        "kind": "vector",
        "view": field.view,
        "width": int(width),
    }


def _is_vector(value: Any) -> bool:
    return value is not None and not isinstance(value, (str, float, int))


def _codes(field: EncodedField, column: pd.Series) -> np.ndarray:
    lookup = field.codes
    labels = _labels(field, column) if field.view is not None else column.astype(str)
    return labels.astype(str).map(lookup).fillna(0).to_numpy(np.float32)


def _bag_codes(field: EncodedField, column: pd.Series) -> np.ndarray:
    lookup = field.codes
    out = np.zeros((len(column), field.width), dtype=np.float32)
    for row, value in enumerate(column.to_numpy()):
        codes = [c for c in (lookup.get(m, 0) for m in _split(value, field.separator)) if c]
        codes = codes[: field.width]
        out[row, : len(codes)] = codes
    return out


def _vectors(field: EncodedField, column: pd.Series) -> np.ndarray:
    out = np.zeros((len(column), field.width), dtype=np.float32)
    for row, value in enumerate(column.to_numpy()):
        if not _is_vector(value):
            continue
        vector = np.asarray(value, dtype=np.float32)
        if vector.shape != (field.width,):
            raise ModelInputsError(
                f"The vector feature {field.name} has a value of length {vector.size}; the "
                f"model reads {field.width}.",
                fix=f"give every {field.name} {field.width} numbers (the training set's length).",
            )
        out[row] = np.nan_to_num(vector, nan=0.0)
    return out


def _legacy_fields(data: dict[str, Any]) -> list[dict[str, Any]]:
    """The fields of a legacy card's encoder (fixed MovieLens fields, genres last)."""
    fields: list[dict[str, Any]] = []
    for column, name in enumerate(data["field_names"]):
        spec: dict[str, Any] = {"name": name, "kind": "categorical", "start": column}
        spec["vocabulary"] = data["vocabularies"][name]
        if name == "release_bucket":
            spec.update(name="release_year", side="item", view="item_profile", bucket_width=5)
        elif name in LEGACY_USER_FIELDS:
            spec.update(side="user", view="user_profile")
        else:
            spec["side"] = "user" if name == "user_id" else "item"
        fields.append(spec)
    fields.append(
        {
            "name": "genres",
            "side": "item",
            "kind": "bag",
            "view": "item_profile",
            "start": len(fields),
            "width": data["max_genres"],
            "vocabulary": data["genres"],
        }
    )
    return fields
