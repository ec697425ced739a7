"""Versions trained on implicit events, served end to end through the engine.

Real (small, untrained) artifacts are written with ``save_artifact`` and loaded back as the
service loads them: an event version (the ranker and its EASE prior, no rating model) and a
rating version (MeLU plus the ranker). The online store is a small in-memory stand-in with the
feature cache's interface: the event snapshot has no recent ratings, so a known user alone is a
cold start from their attributes.
"""

from __future__ import annotations

import itertools
import json
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
RANKER_STEPS = 2
KNOWN_USER, OTHER_USER = 7, 8
# Each test serves its own version tag: under prometheus_client's multiprocess mode (set once
# BentoML is imported in the process) equal label sets would share one value.
VERSIONS = itertools.count(1)


def _encoder() -> FeatureEncoder:
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
                vocabulary=[str(i) for i in range(1, N_ITEMS + 1)],
            ),
        ]
    )


def _ranker(encoder: FeatureEncoder) -> tuple[RankerParts, dict[str, Any]]:
    """A small ranker with an EASE prior fitted on random interactions, and its card section."""
    torch.manual_seed(0)
    config = ranker_config_for(encoder, dim=8, inner_lr_init=0.5)
    interactions = (np.random.default_rng(0).random((20, N_ITEMS)) < 0.4).astype(np.float32)
    parts = RankerParts(
        model=Ranker(config),
        ease=EASE.fit(interactions, l2=1.0),
        item_ids=np.arange(1, N_ITEMS + 1, dtype=np.int64),
    )
    section = {"config": config.to_dict(), "inner_steps": RANKER_STEPS, "blend_weight": 0.4}
    return parts, section


def _card(encoder: FeatureEncoder, ranker: dict[str, Any], *, label: str) -> dict[str, Any]:
    base = fixture_card(
        seed=0,
        algorithm="fomaml",
        metrics={},
        test_users={"new_user": [1]},
        ranking={},
        weights_sha256="0" * 64,
        label=label,
    )
    card = base.model_dump(exclude={"model", "weights_sha256", "files", "format_version"})
    return {**card, "encoder": encoder.model_dump(), "ranker": ranker, "label": label}


def _info(folder: Path) -> VersionInfo:
    version = next(VERSIONS)
    return VersionInfo(
        model="evtest",
        version=version,
        tag=f"evtest:v{version}",
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


def _event_folder(tmp_path: Path) -> Path:
    encoder = _encoder()
    parts, section = _ranker(encoder)
    folder = tmp_path / "event"
    save_artifact(
        folder,
        model=None,
        global_model=None,
        card=_card(encoder, section, label="event"),
        ranker=parts,
    )
    return folder


def _rating_folder(tmp_path: Path) -> Path:
    encoder = _encoder()
    parts, section = _ranker(encoder)
    config = encoder.model_config_for(
        embedding_dim=4, hidden=(8,), output_bias=3.5, meta_sgd=False, inner_lr_init=0.01
    )
    folder = tmp_path / "rating"
    save_artifact(
        folder,
        model=MeLU(config),
        global_model=None,
        card=_card(encoder, section, label="rating"),
        ranker=parts,
    )
    return folder


class _Store:
    """The feature cache's interface over in-memory items and users."""

    def __init__(self, *, recent: dict[int, list[tuple[int, float]]]) -> None:
        ids = np.arange(1, N_ITEMS + 1, dtype=np.int64)
        codes = np.zeros((N_ITEMS, 2), dtype=np.float32)
        codes[:, 1] = ids  # the item id's code (vocabulary "1".."8")
        self.items = ItemMatrix(
            item_ids=ids,
            codes=codes,
            index={int(i): n for n, i in enumerate(ids)},
            signature=("test",),
        )
        self.materialized_at = None
        self._users = {
            user: UserFeatures(
                user_id=user,
                codes=np.array([user % 2 + 1, 0], dtype=np.float32),
                recent_item_ids=tuple(i for i, _ in recent.get(user, [])),
                recent_ratings=tuple(r for _, r in recent.get(user, [])),
            )
            for user in (KNOWN_USER, OTHER_USER)
        }

    def cached_user(self, user_id: int) -> tuple[bool, UserFeatures | None]:
        return True, self._users.get(user_id)

    def user(self, user_id: int) -> UserFeatures | None:
        return self._users.get(user_id)


def _engine(served: ServedModel, *, recent: dict[int, list[tuple[int, float]]] | None = None):
    engine = AdaptationEngine(
        served=served,
        features=_Store(recent=recent or {}),  # type: ignore[arg-type]
        serving=ServingSettings(),
    )
    engine.warm_up()
    return engine


def _items(*ids: int) -> list[SupportRating]:
    return [SupportRating(item_id=i) for i in ids]


@pytest.fixture()
def event(tmp_path: Path) -> ServedModel:
    folder = _event_folder(tmp_path)
    return load_served_folder(folder, info=_info(folder))


@pytest.fixture()
def rating(tmp_path: Path) -> ServedModel:
    folder = _rating_folder(tmp_path)
    return load_served_folder(folder, info=_info(folder))


def test_an_event_version_is_served_by_its_ranker_alone(event: ServedModel):
    assert event.card.label == "event" and event.adapted is None and event.factor is None
    assert event.ranker is not None and not event.predicts_ratings
    assert event.rating_model is None
    engine = _engine(event)  # warm-up works without a rating model
    assert engine.adapter is None and engine.batcher is None and engine.rank_batcher is not None
    meta = engine.metadata(stage="production")
    assert meta.label == "event"
    assert meta.rating_model is None and meta.adaptation_lr is None and meta.meta_sgd is None
    assert meta.adaptation_steps == RANKER_STEPS  # the ranker's inner steps
    assert meta.model_version == event.tag and meta.n_items == N_ITEMS


def test_an_event_version_without_a_ranker_is_refused(tmp_path: Path):
    folder = _event_folder(tmp_path)
    card = json.loads((folder / "model_card.json").read_text())
    card["ranker"] = None
    (folder / "model_card.json").write_text(json.dumps(card))
    with pytest.raises(ServingModelError, match="no ranker"):
        load_served_folder(folder, info=_info(folder))


def test_recommend_ranks_the_interactions_with_the_ranker(event: ServedModel):
    engine = _engine(event)
    assert engine.ranker is not None
    request = RecommendRequest(user_id=KNOWN_USER, support=_items(2, 5), k=3)
    body = run_with_engine(engine, lambda: engine.recommend(request))
    chosen = [item.item_id for item in body.items]
    assert len(chosen) == 3 and not {2, 5} & set(chosen)  # support items not recommended
    assert all(item.predicted_rating is None for item in body.items)
    scores = [item.score for item in body.items]
    assert scores == sorted(scores, reverse=True)
    # The ranker's own scores with each interaction worth a rating of 5 ("liked").
    items = engine.features.items
    rows = np.array([r for r in range(N_ITEMS) if items.item_ids[r] not in (2, 5)])
    expected = engine.ranker.scores(
        items,
        user_codes=engine._user_codes(items, engine.features.user(KNOWN_USER)),
        support_rows=np.array([1, 4]),
        support_ratings=np.full(2, INTERACTION, np.float32),
        candidate_rows=rows,
    )
    top = np.argsort(-expected, kind="stable")[:3]
    assert chosen == [int(items.item_ids[rows[t]]) for t in top]
    np.testing.assert_allclose(scores, expected[top], rtol=1e-6)
    assert metric_sample(engine, "metarec_adaptation_steps_total") == RANKER_STEPS


def test_recommend_without_support_is_a_cold_start(event: ServedModel):
    engine = _engine(event)

    async def both():
        known = await engine.recommend(RecommendRequest(user_id=KNOWN_USER, k=N_ITEMS))
        anonymous = await engine.recommend(
            RecommendRequest(support=_items(1), candidates=[3, 4, 6], k=2)
        )
        return known, anonymous

    known, anonymous = run_with_engine(engine, both)
    # The event snapshot has no recent ratings: every item is ranked, none excluded.
    assert sorted(i.item_id for i in known.items) == list(range(1, N_ITEMS + 1))
    assert all(i.predicted_rating is None for i in known.items)
    assert len(anonymous.items) == 2 and {i.item_id for i in anonymous.items} <= {3, 4, 6}


def test_a_rated_support_item_is_refused_by_an_event_version(event: ServedModel):
    engine = _engine(event)
    support = [SupportRating(item_id=1), SupportRating(item_id=2, rating=4.0)]
    for request in (
        RecommendRequest(support=support),
        RecommendRequest(user_id=KNOWN_USER, support=support),
    ):
        with pytest.raises(ServingInputError) as info:
            run_with_engine(engine, lambda request=request: engine.recommend(request))
        assert info.value.field == "support[1].rating" and info.value.status == 400
        assert "implicit events" in str(info.value) and "without ratings" in str(info.value)


def test_predict_is_refused_by_an_event_version(event: ServedModel):
    engine = _engine(event)
    request = PredictRequest(support=_items(1), item_ids=[2, 3])
    with pytest.raises(ServingInputError) as info:
        run_with_engine(engine, lambda: engine.predict(request))
    assert info.value.field == "endpoint" and info.value.status == 422
    assert "predicts no ratings" in str(info.value) and "/recommend" in str(info.value)
    assert "\n" not in str(info.value)


def test_feedback_to_an_event_version_counts_hits_and_no_mae(event: ServedModel):
    engine = _engine(event)

    async def flow():
        served = await engine.recommend(RecommendRequest(user_id=KNOWN_USER, k=3))
        listed = [i.item_id for i in served.items]
        missed = next(i for i in range(1, N_ITEMS + 1) if i not in listed)
        events = [
            FeedbackEvent(user_id=KNOWN_USER, item_id=listed[0]),  # interaction: a hit
            FeedbackEvent(user_id=KNOWN_USER, item_id=missed),  # interaction: a miss
            FeedbackEvent(user_id=KNOWN_USER, item_id=listed[1], rating=5.0),  # liked: a hit
            FeedbackEvent(user_id=KNOWN_USER, item_id=listed[2], rating=2.0),  # not positive
            FeedbackEvent(user_id=OTHER_USER, item_id=listed[0]),  # never served: not counted
        ]
        return await engine.feedback(FeedbackRequest(events=events))

    assert run_with_engine(engine, flow).accepted == 5
    assert metric_sample(engine, "metarec_feedback_positive_total") == 3
    assert metric_sample(engine, "metarec_feedback_hits_total") == 2
    assert metric_sample(engine, "metarec_online_hit_rate") == pytest.approx(2 / 3)
    assert metric_sample(engine, "metarec_feedback_total") == 0  # no rating model: no MAE
    assert metric_sample(engine, "metarec_feedback_abs_error_count") == 0
    assert len(engine.memory) == 0


def test_feedback_still_checks_users_and_items(event: ServedModel):
    engine = _engine(event)
    bad_item = FeedbackRequest(events=[FeedbackEvent(user_id=KNOWN_USER, item_id=99)])
    with pytest.raises(ServingInputError) as info:
        run_with_engine(engine, lambda: engine.feedback(bad_item))
    assert info.value.field == "events[0].item_id"
    bad_user = FeedbackRequest(events=[FeedbackEvent(user_id=12345, item_id=1)])
    with pytest.raises(ServingInputError) as info:
        run_with_engine(engine, lambda: engine.feedback(bad_user))
    assert info.value.field == "events[0].user_id" and info.value.status == 404


def test_a_rating_version_needs_a_rating_per_support_item(rating: ServedModel):
    engine = _engine(rating)
    assert engine.adapter is not None and rating.predicts_ratings
    meta = engine.metadata(stage="production")
    assert meta.label == "rating" and meta.rating_model == "fomaml" and meta.meta_sgd is False
    assert meta.adaptation_steps == 3 and meta.adaptation_lr == pytest.approx(0.01)
    support = [SupportRating(item_id=1, rating=4.0), SupportRating(item_id=2)]
    for call in (
        lambda: engine.recommend(RecommendRequest(support=support)),
        lambda: engine.predict(PredictRequest(support=support, item_ids=[3])),
    ):
        with pytest.raises(ServingInputError) as info:
            run_with_engine(engine, call)
        assert info.value.field == "support[1].rating" and info.value.status == 400
        assert "1-5 rating" in str(info.value)
    rated = [SupportRating(item_id=1, rating=4.0), SupportRating(item_id=2, rating=2.0)]
    body = run_with_engine(engine, lambda: engine.recommend(RecommendRequest(support=rated, k=3)))
    assert len(body.items) == 3
    assert all(1.0 <= (item.predicted_rating or 0) <= 5.0 for item in body.items)


def test_unrated_feedback_to_a_rating_version_counts_for_hits_only(rating: ServedModel):
    engine = _engine(rating, recent={KNOWN_USER: [(1, 5.0), (2, 3.0)]})

    async def flow():
        served = await engine.recommend(RecommendRequest(user_id=KNOWN_USER, k=3))
        listed = [i.item_id for i in served.items]
        remembered = {i.item_id: i.predicted_rating for i in served.items}
        events = [
            FeedbackEvent(user_id=KNOWN_USER, item_id=listed[0]),  # interaction: a hit, no MAE
            FeedbackEvent(user_id=KNOWN_USER, item_id=listed[1], rating=2.0),  # MAE only
        ]
        await engine.feedback(FeedbackRequest(events=events))
        return listed, remembered

    listed, remembered = run_with_engine(engine, flow)
    assert 1 not in listed and 2 not in listed  # the recent ratings were the support set
    assert metric_sample(engine, "metarec_feedback_positive_total") == 1
    assert metric_sample(engine, "metarec_feedback_hits_total") == 1
    assert metric_sample(engine, "metarec_feedback_total") == 1  # the rated event alone
    error = abs(remembered[listed[1]] - 2.0)
    assert metric_sample(engine, "metarec_feedback_abs_error_sum") == pytest.approx(error)
    assert metric_sample(engine, "metarec_online_mae") == pytest.approx(error)


def test_only_a_trusted_callers_answers_are_remembered_for_feedback(rating: ServedModel):
    """An untrusted /predict or /recommend cannot plant what real feedback is judged against."""
    engine = _engine(rating, recent={KNOWN_USER: [(1, 5.0), (2, 3.0)]})
    trusted = [False]
    engine.remembers = lambda: trusted[0]
    planted = PredictRequest(
        user_id=KNOWN_USER, support=[SupportRating(item_id=3, rating=1.0)], item_ids=[4, 5]
    )

    async def visit() -> tuple[bool, int, float]:
        await engine.predict(planted)
        served = await engine.recommend(RecommendRequest(user_id=KNOWN_USER, k=3))
        listed = [i.item_id for i in served.items]
        await engine.feedback(
            FeedbackRequest(events=[FeedbackEvent(user_id=KNOWN_USER, item_id=listed[0])])
        )
        positives = metric_sample(engine, "metarec_feedback_positive_total")
        planted_kept = engine.memory.get(KNOWN_USER, 4) is not None
        return planted_kept, len(engine.hits.lists), positives

    async def both() -> list[tuple[bool, int, float]]:
        untrusted = await visit()
        trusted[0] = True
        return [untrusted, await visit()]

    untrusted, trusted_visit = run_with_engine(engine, both)
    assert untrusted == (False, 0, 0.0)  # nothing remembered: the feedback had no list
    assert trusted_visit == (True, 1, 1.0)  # the predictions and the list, then one hit
    assert metric_sample(engine, "metarec_feedback_hits_total") == 1
