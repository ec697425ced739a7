"""Request and response bodies of the adaptation service (its OpenAPI contract).

Types are strict (``true`` is not an id, ``"4"`` is not a rating); ratings are finite and on the
1..5 scale; unknown fields are refused. An id is an integer (>= 1) or a team's text id (a JSON
string such as ``"c001"``: 1..256 characters, no control characters); ``"3"`` is a text id, not
the integer 3. Which kind a version takes is its training data's: the engine refuses the other
kind with a 400 naming the field. Ratings are optional in the schema: a version trained on
ratings needs one per support item, a version trained on implicit events takes none (an item
without a rating is an interaction). What depends on the served version (a support item's rating)
or on configuration (support size, candidates, ``k``) is checked by the engine, which names the
field in its 4xx answer.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, WithJsonSchema
from pydantic_core import PydanticCustomError

RATING_MIN = 1.0
RATING_MAX = 5.0
# Hard schema bounds (the configured limits in ServingSettings are usually tighter).
SCHEMA_MAX_LIST = 100_000
ID_MAX = 2**31 - 1
TEXT_ID_MAX_LENGTH = 256
_TEXT_ID_PATTERN = r"^[^\x00-\x1f\x7f]+$"


def _id(value: Any) -> int | str:
    """An id: a strict int in 1..ID_MAX, or a non-empty text id without control characters."""
    if isinstance(value, int) and not isinstance(value, bool):
        if 1 <= value <= ID_MAX:
            return value
        raise PydanticCustomError(
            "id_range", "an integer id is between 1 and {limit}", {"limit": ID_MAX}
        )
    if isinstance(value, str):
        if not 1 <= len(value) <= TEXT_ID_MAX_LENGTH:
            raise PydanticCustomError(
                "id_length",
                "a text id has 1 to {limit} characters",
                {"limit": TEXT_ID_MAX_LENGTH},
            )
        if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
            raise PydanticCustomError("id_characters", "a text id has no control characters")
        return value
    raise PydanticCustomError("id_type", "an id is an integer (>= 1) or a text id (a JSON string)")


def _id_schema(description: str) -> WithJsonSchema:
    """An id field's OpenAPI schema: an integer or a text id (what :func:`_id` accepts)."""
    return WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": 1, "maximum": ID_MAX},
                {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": TEXT_ID_MAX_LENGTH,
                    "pattern": _TEXT_ID_PATTERN,
                },
            ],
            "description": description,
        }
    )


_KINDS = (
    " An integer (>= 1), or a text id (a string, e.g. {example!r}) for a version trained on "
    "a team's text ids; a version takes the kind of id it was trained on."
)
ItemId = Annotated[
    int | str,
    PlainValidator(_id),
    _id_schema("An item id." + _KINDS.format(example="sku-001")),
]
UserId = Annotated[
    int | str,
    PlainValidator(_id),
    _id_schema("A user id." + _KINDS.format(example="c001")),
]
# An id in a response: the version's kind (an integer, or the team's text id).
ItemIdOut = Annotated[
    int | str,
    Field(description="An item id: an integer, or the team's text id for a text-id version."),
]
Rating = Annotated[
    float,
    Field(
        ge=RATING_MIN,
        le=RATING_MAX,
        allow_inf_nan=False,
        description="A rating on the 1..5 scale.",
    ),
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


def _titled(title: str) -> ConfigDict:
    """A request body's config with its title fixed.

    A 400 names the body's title (``1 validation error for RecommendRequest``); BentoML
    validates ``@bentoml.api`` bodies with a subclass of the schema (its own class name), which
    inherits a title set here, so both of the service's request paths word the 400 alike.
    """
    return ConfigDict(extra="forbid", strict=True, title=title)


class SupportRating(_Strict):
    """One item of the user's support set: an item rated, or (event versions) interacted with."""

    item_id: ItemId
    rating: Rating | None = Field(
        default=None,
        description="The user's 1..5 rating of the item: required by a version trained on "
        "ratings, refused by a version trained on implicit events (there, an item without a "
        "rating is one the user interacted with; see GET /metadata `label`).",
    )


class RecommendRequest(_Strict):
    """``POST /recommend``: adapt to the user, return the top-k candidates."""

    model_config = _titled("RecommendRequest")

    user_id: UserId | None = Field(
        default=None,
        description="The user. Alone, the support set is the user's recent ratings in Feast "
        "(none in a store without them: a cold start from the user's attributes).",
    )
    support: list[SupportRating] | None = Field(
        default=None,
        max_length=SCHEMA_MAX_LIST,
        description="The items to adapt on: rated items (rating versions) or items the user "
        "interacted with (event versions); default: the user's recent ratings.",
    )
    candidates: list[ItemId] | None = Field(
        default=None, max_length=SCHEMA_MAX_LIST, description="Items to rank (default: all)."
    )
    k: int = Field(default=10, strict=True, ge=1, le=SCHEMA_MAX_LIST, description="Top-k.")


class PredictRequest(_Strict):
    """``POST /predict``: adapt to the user, predict ratings of the given items."""

    model_config = _titled("PredictRequest")

    user_id: UserId | None = Field(default=None, description="The user.")
    support: list[SupportRating] | None = Field(
        default=None,
        max_length=SCHEMA_MAX_LIST,
        description="Rated items to adapt on (default: the user's recent ratings).",
    )
    item_ids: list[ItemId] = Field(
        min_length=1, max_length=SCHEMA_MAX_LIST, description="Items to predict."
    )


class FeedbackEvent(_Strict):
    """An observed rating, or (no rating) an observed positive interaction."""

    user_id: UserId
    item_id: ItemId
    rating: Rating | None = Field(
        default=None,
        description="The rating the user gave (1..5): scored for the online MAE (versions that "
        "predict ratings) and a hit-rate positive when >= 4. Omitted: a positive interaction "
        "(click, purchase ...), counted for the online hit rate only. Either kind is accepted by "
        "every version.",
    )


class FeedbackRequest(_Strict):
    """``POST /feedback``: observed ratings and interactions, scored against what was served."""

    model_config = _titled("FeedbackRequest")

    events: list[FeedbackEvent] = Field(min_length=1, max_length=SCHEMA_MAX_LIST)


class ScoredItem(BaseModel):
    """A recommended item: its ranking score and (rating versions) its predicted rating."""

    item_id: ItemIdOut
    score: float = Field(
        description="The ranker's score (higher ranks first; a standardised blend, not a "
        "rating). Versions trained before the ranker existed report the predicted rating."
    )
    predicted_rating: float | None = Field(
        description="The predicted rating on the 1..5 scale; null for a version trained on "
        "implicit events (it predicts no ratings)."
    )


class RecommendResponse(BaseModel):
    """Top-k items, best first."""

    model_version: str
    items: list[ScoredItem]


class PredictedRating(BaseModel):
    """A predicted rating (clamped to the 1..5 scale, as offline evaluation does)."""

    item_id: ItemIdOut
    rating: float


class PredictResponse(BaseModel):
    """Predictions in the order of the request's ``item_ids``."""

    model_version: str
    predictions: list[PredictedRating]


class FeedbackResponse(BaseModel):
    """How many events were scored."""

    accepted: int


class InputFieldInfo(BaseModel):
    """One input field of the served model, as its card's encoder lists it."""

    name: str = Field(description="The feature (or id) name.")
    side: Literal["user", "item"] = Field(description="Whose field it is.")
    kind: Literal["categorical", "bag", "numeric", "vector"] = Field(
        description="How it is encoded."
    )
    view: str | None = Field(
        description="The Feast feature view it is read from (null: an id, not read)."
    )
    width: int = Field(description="Columns of the encoded row it takes.")
    vocabulary_size: int | None = Field(
        default=None, description="Known values (categorical and bag fields; null otherwise)."
    )


class Metadata(BaseModel):
    """What the service serves."""

    model: str
    version: int
    model_version: str
    stage: str
    feature_service: str
    label: Literal["rating", "event"] = Field(
        description="What the version learnt from: ratings (it predicts ratings; support items "
        "carry ratings) or implicit events (it ranks only: /predict is refused, support items "
        "carry no rating, predicted_rating is null)."
    )
    algorithm: str
    rating_model: str | None = Field(
        description="The model that predicts ratings (null for an event version)."
    )
    adaptation_steps: int = Field(
        description="Inner steps per request: the rating model's (rating versions), the "
        "ranker's (event versions)."
    )
    adaptation_lr: float | None = Field(
        description="The rating model's inner rate (null with Meta-SGD, and for event versions)."
    )
    meta_sgd: bool | None = Field(
        description="Whether the rating model adapts with learnt per-parameter rates (null for "
        "event versions)."
    )
    n_items: int
    user_ids: Literal["integer", "text"] = Field(
        default="integer",
        description="The kind of user id the version takes and returns: integers, or the "
        "team's text ids (JSON strings).",
    )
    item_ids: Literal["integer", "text"] = Field(
        default="integer",
        description="The kind of item id the version takes and returns: integers, or the "
        "team's text ids (JSON strings).",
    )
    features_materialized_at: str | None
    input_fields: list[InputFieldInfo] = Field(
        description="The model's input fields, read from the online store as "
        "`{view}:{name}` (ids are not read)."
    )
    max_support_size: int
    max_candidates: int
    max_batch_size: int


class ErrorBody(BaseModel):
    """A 4xx answer: the field at fault, what is wrong and the fix."""

    error: str
    field: str
