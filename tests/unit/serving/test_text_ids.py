"""A team's text ids (users ``c001``, items ``sku-001``) served end to end through the engine.

Real (small, untrained) artifacts are written with ``save_artifact`` as training writes a
text-id version (the ranker's catalogue as text ids in the card, the users recorded by their
text ids) and loaded back as the service loads them: an event version and a rating version.
The online store is an in-memory stand-in with the feature cache's interface, keyed by text ids
as Feast's ``String`` entity keys are. An integer-id version refuses text ids, naming the field.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from metarec.config import ServingSettings
from metarec.errors import ServingInputError, ServingModelError
from metarec.learning.item_models import EASE
from metarec.learning.model import MeLU
from metarec.learning.ranker import Ranker
from metarec.registry.types import Lineage, Stage, VersionInfo
from metarec.serving.engine import INTERACTION, AdaptationEngine
from metarec.serving.features import ItemMatrix, UserFeatures
from metarec.serving.loading import ServedModel, load_served_folder
from metarec.serving.quality import OnlineHitRate, PredictionMemory
from metarec.serving.ranking import prior_rows
from metarec.serving.schemas import (
    FeedbackEvent,
    FeedbackRequest,
    PredictRequest,
    RecommendRequest,
    SupportRating,
)
from metarec.testing.registry import fixture_card
from metarec.testing.serving import metric_sample, run_with_engine
from metarec.training.artifact import RankerParts, save_artifact
from metarec.training.encoding import EncodedField, FeatureEncoder
from metarec.training.ranking import ranker_config_for

N_ITEMS = 8
TEXT_ITEMS = [f"sku-{i:03d}" for i in range(1, N_ITEMS + 1)]
INT_ITEMS = list(range(1, N_ITEMS + 1))
KNOWN, OTHER = "c001", "c002"
INT_KNOWN = 7
VERSIONS = itertools.count(1)  # a tag per test (prometheus multiprocess mode shares labels)


def _encoder(items: list[Any]) -> FeatureEncoder:
    return FeatureEncoder(
        fields=[
            EncodedField(
                name="gender",
                side="user",
                kind="categorical",
                view="user_profile",
                start=0,
                vocabulary=["F", "M"],
            ),
            EncodedField(
                name="item_id",
                side="item",
                kind="categorical",
                start=1,
                vocabulary=[str(i) for i in items],
            ),
        ]
    )


def _ranker(encoder: FeatureEncoder, catalogue: np.ndarray) -> tuple[RankerParts, dict]:
    torch.manual_seed(0)
    config = ranker_config_for(encoder, dim=8, inner_lr_init=0.5)
    interactions = (np.random.default_rng(0).random((20, len(catalogue))) < 0.4).astype(np.float32)
    parts = RankerParts(
        model=Ranker(config), ease=EASE.fit(interactions, l2=1.0), item_ids=catalogue
    )
    return parts, {"config": config.to_dict(), "inner_steps": 2, "blend_weight": 0.4}


def _folder(tmp_path: Path, *, label: str, text: bool) -> Path:
    items = TEXT_ITEMS if text else INT_ITEMS
    users: list[Any] = [KNOWN, OTHER] if text else [INT_KNOWN, 8]
    encoder = _encoder(items)
    catalogue = np.array(items, dtype=object) if text else np.array(items, dtype=np.int64)
    parts, section = _ranker(encoder, catalogue)
    base = fixture_card(
        seed=0,
        algorithm="fomaml",
        metrics={},
        test_users={"new_user": users[:1]},
        ranking={},
        weights_sha256="0" * 64,
        label=label,
    )
    card = base.model_dump(exclude={"model", "weights_sha256", "files", "format_version"})
    card = {
        **card,
        "split": {"seed": 0, "val_users": users[1:], "test_users": users[:1]},
        "encoder": encoder.model_dump(),
        "ranker": section,
        "label": label,
    }
    model = None
    if label == "rating":
        config = encoder.model_config_for(
            embedding_dim=4, hidden=(8,), output_bias=3.5, meta_sgd=False, inner_lr_init=0.01
        )
        model = MeLU(config)
    folder = tmp_path / f"{label}-{'text' if text else 'int'}"
    save_artifact(folder, model=model, global_model=None, card=card, ranker=parts)
    return folder


def _load(folder: Path) -> ServedModel:
    version = next(VERSIONS)
    info = VersionInfo(
        model="textids",
        version=version,
        tag=f"textids:v{version}",
        stage=Stage.PRODUCTION,
        artifact_uri=str(folder),
        digest="sha256:" + "0" * 64,
        files={},
        lineage=Lineage(),
        gate_decision=None,
        bento_tag=None,
        created_by="test",
        created_at=datetime(2026, 12, 1, tzinfo=UTC),
    )
    return load_served_folder(folder, info=info)


class _Store:
    """The feature cache's interface, keyed as a Feast store of text (or integer) ids."""

    def __init__(self, *, text: bool, recent: dict[Any, list[tuple[Any, float]]]) -> None:
        items = TEXT_ITEMS if text else INT_ITEMS
        ids = np.array(items, dtype=object) if text else np.array(items, dtype=np.int64)
        codes = np.zeros((N_ITEMS, 2), dtype=np.float32)
        codes[:, 1] = np.arange(1, N_ITEMS + 1)  # the item id's code in the vocabulary
        self.items = ItemMatrix(
            item_ids=ids, codes=codes, index={i: n for n, i in enumerate(items)}, signature=()
        )
        self.text_users = self.text_items = text
        self.materialized_at = None
        users = [KNOWN, OTHER] if text else [INT_KNOWN, 8]
        self._users = {
            user: UserFeatures(
                user_id=user,
                codes=np.array([n + 1, 0], dtype=np.float32),
                recent_item_ids=tuple(i for i, _ in recent.get(user, [])),
                recent_ratings=tuple(r for _, r in recent.get(user, [])),
            )
            for n, user in enumerate(users)
        }

    def cached_user(self, user_id: Any) -> tuple[bool, UserFeatures | None]:
        return True, self._users.get(user_id)

    def user(self, user_id: Any) -> UserFeatures | None:
        return self._users.get(user_id)


def _engine(served: ServedModel, *, text: bool = True, recent=None) -> AdaptationEngine:
    store = _Store(text=text, recent=recent or {})
    engine = AdaptationEngine(served=served, features=store, serving=ServingSettings())  # type: ignore[arg-type]
    engine.warm_up()
    return engine


@pytest.fixture()
def event(tmp_path: Path) -> ServedModel:
    return _load(_folder(tmp_path, label="event", text=True))


@pytest.fixture()
def rating(tmp_path: Path) -> ServedModel:
    return _load(_folder(tmp_path, label="rating", text=True))


@pytest.fixture()
def int_rating(tmp_path: Path) -> ServedModel:
    return _load(_folder(tmp_path, label="rating", text=False))


def test_a_text_id_version_knows_its_kind_of_ids(event: ServedModel, int_rating: ServedModel):
    assert event.text_users and event.text_items
    assert event.ranker is not None and list(event.ranker.item_ids) == TEXT_ITEMS
    assert not int_rating.text_users and not int_rating.text_items
    meta = _engine(event).metadata(stage="production")
    assert (meta.user_ids, meta.item_ids, meta.n_items) == ("text", "text", N_ITEMS)
    meta = _engine(int_rating, text=False).metadata(stage="production")
    assert (meta.user_ids, meta.item_ids) == ("integer", "integer")


def test_an_event_version_recommends_text_ids_from_its_ranker(event: ServedModel):
    engine = _engine(event)
    assert engine.ranker is not None
    request = RecommendRequest(
        user_id=KNOWN,
        support=[SupportRating(item_id="sku-002"), SupportRating(item_id="sku-005")],
        k=3,
    )
    body = run_with_engine(engine, lambda: engine.recommend(request))
    chosen = [item.item_id for item in body.items]
    assert len(chosen) == 3 and all(isinstance(i, str) for i in chosen)
    assert set(chosen) <= set(TEXT_ITEMS) - {"sku-002", "sku-005"}
    assert all(item.predicted_rating is None for item in body.items)
    # The ranker's scores, the support's catalogue rows aligned by text id.
    items = engine.features.items
    rows = np.array([r for r in range(N_ITEMS) if items.item_ids[r] not in ("sku-002", "sku-005")])
    expected = engine.ranker.scores(
        items,
        user_codes=engine._user_codes(items, engine.features.user(KNOWN)),
        support_rows=np.array([1, 4]),
        support_ratings=np.full(2, INTERACTION, np.float32),
        candidate_rows=rows,
    )
    top = np.argsort(-expected, kind="stable")[:3]
    assert chosen == [str(items.item_ids[rows[t]]) for t in top]
    np.testing.assert_allclose([i.score for i in body.items], expected[top], rtol=1e-6)
    assert (engine.ranker._terms(items).prior_rows == np.arange(N_ITEMS)).all()


def test_a_known_users_recent_text_items_are_the_support(event: ServedModel):
    engine = _engine(event, recent={KNOWN: [("sku-003", 5.0), ("sku-999", 5.0)]})

    async def both():
        known = await engine.recommend(RecommendRequest(user_id=KNOWN, k=N_ITEMS))
        ranked = await engine.recommend(
            RecommendRequest(
                support=[SupportRating(item_id="sku-001")],
                candidates=["sku-004", "sku-006", "sku-004"],
                k=5,
            )
        )
        return known, ranked

    known, ranked = run_with_engine(engine, both)
    # The recent item in the catalogue is the support set (not recommended); the other is not
    # in the catalogue and is left out.
    assert sorted(i.item_id for i in known.items) == [i for i in TEXT_ITEMS if i != "sku-003"]
    assert sorted(i.item_id for i in ranked.items) == ["sku-004", "sku-006"]


def test_feedback_with_text_ids_counts_hits(event: ServedModel):
    engine = _engine(event)

    async def flow():
        served = await engine.recommend(RecommendRequest(user_id=KNOWN, k=3))
        listed = [i.item_id for i in served.items]
        missed = next(i for i in TEXT_ITEMS if i not in listed)
        events = [
            FeedbackEvent(user_id=KNOWN, item_id=listed[0]),  # a hit
            FeedbackEvent(user_id=KNOWN, item_id=missed),  # a miss
            FeedbackEvent(user_id=KNOWN, item_id=listed[1], rating=4.0),  # liked: a hit
            FeedbackEvent(user_id=OTHER, item_id=listed[0]),  # never served: not counted
        ]
        return await engine.feedback(FeedbackRequest(events=events))

    assert run_with_engine(engine, flow).accepted == 4
    assert metric_sample(engine, "metarec_feedback_positive_total") == 3
    assert metric_sample(engine, "metarec_feedback_hits_total") == 2
    assert metric_sample(engine, "metarec_online_hit_rate") == pytest.approx(2 / 3)


def test_unknown_text_ids_get_the_usual_answers(event: ServedModel):
    engine = _engine(event)
    cases = [
        (
            lambda: engine.recommend(RecommendRequest(support=[SupportRating(item_id="sku-x")])),
            "support[0].item_id",
            422,
            "item 'sku-x' is unknown",
        ),
        (
            lambda: engine.recommend(RecommendRequest(user_id="c999")),
            "user_id",
            404,
            "user 'c999' is unknown",
        ),
        (
            lambda: engine.feedback(
                FeedbackRequest(events=[FeedbackEvent(user_id="c999", item_id="sku-001")])
            ),
            "events[0].user_id",
            404,
            "user 'c999' is unknown",
        ),
    ]
    for call, field, status, problem in cases:
        with pytest.raises(ServingInputError) as info:
            run_with_engine(engine, call)
        assert (info.value.field, info.value.status) == (field, status)
        assert problem in str(info.value)


def test_a_text_id_version_refuses_integer_ids(event: ServedModel):
    engine = _engine(event)
    for call, field in [
        (lambda: engine.recommend(RecommendRequest(user_id=1)), "user_id"),
        (
            lambda: engine.recommend(RecommendRequest(support=[SupportRating(item_id=3)])),
            "support[0].item_id",
        ),
        (
            lambda: engine.recommend(RecommendRequest(user_id=KNOWN, candidates=["sku-001", 2])),
            "candidates[1]",
        ),
    ]:
        with pytest.raises(ServingInputError) as info:
            run_with_engine(engine, call)
        assert info.value.field == field and info.value.status == 400
        assert "is a number, and this version's" in str(info.value)
        assert "ids are text" in str(info.value) and "JSON string" in str(info.value)


def test_a_rating_version_with_text_ids_predicts_and_scores_feedback(rating: ServedModel):
    assert rating.predicts_ratings and rating.text_items and rating.text_users
    engine = _engine(rating, recent={KNOWN: [("sku-001", 5.0), ("sku-002", 3.0)]})

    async def flow():
        served = await engine.recommend(RecommendRequest(user_id=KNOWN, k=3))
        predicted = await engine.predict(
            PredictRequest(
                user_id=OTHER,
                support=[SupportRating(item_id="sku-001", rating=5.0)],
                item_ids=["sku-004", "sku-003"],
            )
        )
        listed = [i.item_id for i in served.items]
        remembered = {i.item_id: i.predicted_rating for i in served.items}
        await engine.feedback(
            FeedbackRequest(
                events=[
                    FeedbackEvent(user_id=KNOWN, item_id=listed[0]),  # a hit, no MAE
                    FeedbackEvent(user_id=KNOWN, item_id=listed[1], rating=2.0),  # remembered
                    FeedbackEvent(user_id=OTHER, item_id="sku-008", rating=4.0),  # predicted now
                ]
            )
        )
        return listed, remembered, predicted

    listed, remembered, predicted = run_with_engine(engine, flow)
    assert not {"sku-001", "sku-002"} & set(listed)  # the recent ratings were the support
    assert all(isinstance(i, str) and 1.0 <= (remembered[i] or 0) <= 5.0 for i in listed)
    assert [p.item_id for p in predicted.predictions] == ["sku-004", "sku-003"]
    assert all(1.0 <= p.rating <= 5.0 for p in predicted.predictions)
    assert engine.memory.get(OTHER, "sku-004") == predicted.predictions[0].rating
    assert engine.memory.get(OTHER, "sku-008") is not None  # scored on the fly, remembered
    assert metric_sample(engine, "metarec_feedback_total") == 2
    assert metric_sample(engine, "metarec_feedback_hits_total") == 1
    error = abs(remembered[listed[1]] - 2.0)
    assert metric_sample(engine, "metarec_feedback_abs_error_sum") == pytest.approx(
        error + abs(engine.memory.get(OTHER, "sku-008") - 4.0)
    )


def test_an_integer_id_version_refuses_text_ids_naming_the_field(int_rating: ServedModel):
    engine = _engine(int_rating, text=False)
    support = [SupportRating(item_id=1, rating=4.0), SupportRating(item_id="sku-001", rating=4.0)]
    cases = [
        (lambda: engine.recommend(RecommendRequest(user_id="c001")), "user_id", "user"),
        (lambda: engine.recommend(RecommendRequest(support=support)), "support[1].item_id", "item"),
        (
            lambda: engine.recommend(RecommendRequest(user_id=INT_KNOWN, candidates=[2, "3"])),
            "candidates[1]",
            "item",
        ),
        (
            lambda: engine.predict(PredictRequest(user_id=INT_KNOWN, item_ids=["sku-002"])),
            "item_ids[0]",
            "item",
        ),
        (
            lambda: engine.feedback(
                FeedbackRequest(events=[FeedbackEvent(user_id="c001", item_id=1)])
            ),
            "events[0].user_id",
            "user",
        ),
        (
            lambda: engine.feedback(
                FeedbackRequest(events=[FeedbackEvent(user_id=INT_KNOWN, item_id="sku-001")])
            ),
            "events[0].item_id",
            "item",
        ),
    ]
    for call, field, side in cases:
        with pytest.raises(ServingInputError) as info:
            run_with_engine(engine, call)
        assert info.value.field == field and info.value.status == 400
        message = str(info.value)
        assert f"{side} id '" in message
        assert f"is not an integer, and this version's {side} ids are" in message
        assert "\n" not in message
    # Integer ids are served as before.
    body = run_with_engine(
        engine, lambda: engine.recommend(RecommendRequest(user_id=INT_KNOWN, k=3))
    )
    assert len(body.items) == 3 and all(type(i.item_id) is int for i in body.items)


def test_a_version_and_a_store_of_different_ids_do_not_start(
    event: ServedModel, int_rating: ServedModel
):
    with pytest.raises(ServingModelError, match="trained on text user ids"):
        _engine(event, text=False)
    with pytest.raises(ServingModelError, match="trained on integer user ids"):
        _engine(int_rating, text=True)


def test_the_prior_rows_align_text_ids_in_any_catalogue_order():
    catalogue = np.array(["sku-003", "sku-001", "sku-002"], dtype=object)  # not sorted
    served = np.array(["sku-001", "sku-002", "sku-004"], dtype=object)
    assert prior_rows(catalogue, served).tolist() == [1, 2, -1]
    ints = np.array([1, 2, 5], dtype=np.int64)
    assert prior_rows(ints, np.array([1, 3, 5], dtype=np.int64)).tolist() == [0, -1, 2]
    assert prior_rows(ints, served).tolist() == [-1, -1, -1]  # another kind of id: absent
    assert prior_rows(np.array([], dtype=np.int64), ints).tolist() == [-1, -1, -1]


def test_quality_memories_key_text_ids():
    memory = PredictionMemory(capacity=4)
    memory.remember("c001", ["sku-001", "sku-002"], [4.0, 2.0])
    assert memory.get("c001", "sku-002") == 2.0 and memory.get("c001", "sku-003") is None
    hits = OnlineHitRate(capacity=4, window=10)
    hits.served("c001", ["sku-001", "sku-002"])
    hits.served(7, [1, 2])
    counted = hits.score(
        [("c001", "sku-001", None), ("c001", "sku-009", 5.0), (7, 2, None), (7, "2", None)]
    )
    assert (counted.positives, counted.hits) == (4, 2)
