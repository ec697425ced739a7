import math

import pytest
from metarec.serving.schemas import (
    FeedbackRequest,
    PredictRequest,
    RecommendRequest,
    ScoredItem,
)
from pydantic import ValidationError


def fields(exc: ValidationError) -> set[str]:
    return {".".join(str(p) for p in e["loc"]) for e in exc.errors()}


def test_valid_requests_parse():
    request = RecommendRequest.model_validate_json(
        '{"user_id": 3, "support": [{"item_id": 1, "rating": 4}], "candidates": [2], "k": 5}'
    )
    assert request.support[0].rating == 4.0
    assert PredictRequest.model_validate({"item_ids": [1, 2]}).user_id is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ('{"support": [{"item_id": 1, "rating": 5.5}]}', "support.0.rating"),
        ('{"support": [{"item_id": 1, "rating": 0}]}', "support.0.rating"),
        ('{"support": [{"item_id": 1, "rating": NaN}]}', "support.0.rating"),
        ('{"support": [{"item_id": 1, "rating": Infinity}]}', "support.0.rating"),
        ('{"support": [{"item_id": 1, "rating": "4"}]}', "support.0.rating"),
        ('{"support": [{"item_id": 1.5, "rating": 4}]}', "support.0.item_id"),
        ('{"support": [{"item_id": 0, "rating": 4}]}', "support.0.item_id"),
        ('{"user_id": ""}', "user_id"),
        ('{"user_id": "c\\u000101"}', "user_id"),
        ('{"user_id": 3.0}', "user_id"),
        ('{"candidates": [1, null]}', "candidates.1"),
        ('{"user_id": true}', "user_id"),
        ('{"k": 0}', "k"),
        ('{"extra": 1}', "extra"),
    ],
)
def test_bad_recommend_bodies_name_the_field(body, field):
    with pytest.raises(ValidationError) as info:
        RecommendRequest.model_validate_json(body)
    assert field in fields(info.value)


def test_predict_needs_items_and_feedback_needs_events():
    with pytest.raises(ValidationError) as info:
        PredictRequest.model_validate_json('{"user_id": 1}')
    assert "item_ids" in fields(info.value)
    with pytest.raises(ValidationError) as info:
        FeedbackRequest.model_validate_json('{"events": []}')
    assert "events" in fields(info.value)


def test_schema_documents_rating_bounds():
    schema = RecommendRequest.model_json_schema()
    field = schema["$defs"]["SupportRating"]["properties"]["rating"]
    rating, null = field["anyOf"]  # optional: event versions take items without ratings
    assert null == {"type": "null"} and "rating" not in schema["$defs"]["SupportRating"].get(
        "required", []
    )
    assert rating["minimum"] == 1.0 and rating["maximum"] == 5.0
    assert not math.isnan(rating["maximum"])
    assert "implicit events" in field["description"]


def test_ratings_are_optional_in_support_and_feedback_and_predictions():
    request = RecommendRequest.model_validate_json('{"support": [{"item_id": 1}]}')
    assert request.support is not None and request.support[0].rating is None
    feedback = FeedbackRequest.model_validate_json('{"events": [{"user_id": 1, "item_id": 2}]}')
    assert feedback.events[0].rating is None
    with pytest.raises(ValidationError) as info:  # a rating, when given, is still checked
        FeedbackRequest.model_validate_json(
            '{"events": [{"user_id": 1, "item_id": 2, "rating": 6}]}'
        )
    assert "events.0.rating" in fields(info.value)
    item = ScoredItem(item_id=1, score=0.5, predicted_rating=None)
    assert item.model_dump() == {"item_id": 1, "score": 0.5, "predicted_rating": None}
    scored = ScoredItem.model_json_schema()
    assert "predicted_rating" in scored["required"]  # always present, null for event versions
    assert {"type": "null"} in scored["properties"]["predicted_rating"]["anyOf"]


def test_text_ids_parse_as_text_and_integers_stay_integers():
    request = RecommendRequest.model_validate_json(
        '{"user_id": "c001", "support": [{"item_id": "sku-001"}], "candidates": ["sku-002", 3]}'
    )
    assert request.user_id == "c001" and request.support[0].item_id == "sku-001"
    assert request.candidates == ["sku-002", 3]  # the engine refuses the kind a version lacks
    assert RecommendRequest.model_validate_json('{"user_id": "3"}').user_id == "3"  # text
    assert RecommendRequest.model_validate_json('{"user_id": 3}').user_id == 3
    event = FeedbackRequest.model_validate_json('{"events": [{"user_id": "c1", "item_id": "s"}]}')
    assert (event.events[0].user_id, event.events[0].item_id) == ("c1", "s")
    assert PredictRequest.model_validate({"item_ids": ["a", "b"]}).item_ids == ["a", "b"]


def test_text_ids_are_bounded():
    assert RecommendRequest.model_validate({"user_id": "u" * 256}).user_id == "u" * 256
    with pytest.raises(ValidationError) as info:
        RecommendRequest.model_validate({"user_id": "u" * 257})
    assert fields(info.value) == {"user_id"} and "256" in str(info.value)
    with pytest.raises(ValidationError) as info:
        RecommendRequest.model_validate({"user_id": 2**31})
    assert fields(info.value) == {"user_id"}


def test_schema_documents_both_kinds_of_id():
    schema = RecommendRequest.model_json_schema()
    user = schema["properties"]["user_id"]["anyOf"][0]
    integer, text = user["anyOf"]
    assert integer == {"type": "integer", "minimum": 1, "maximum": 2**31 - 1}
    assert text["type"] == "string" and text["minLength"] == 1 and text["maxLength"] == 256
    assert "text id" in user["description"]
    item = schema["$defs"]["SupportRating"]["properties"]["item_id"]
    assert [k["type"] for k in item["anyOf"]] == ["integer", "string"]
    out = ScoredItem(item_id="sku-001", score=0.5, predicted_rating=None)
    assert out.model_dump()["item_id"] == "sku-001"
