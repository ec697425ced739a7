"""The request logic of the adaptation service, independent of BentoML.

Every request is checked against the loaded features and the configured limits first; a bad
request raises :class:`~metarec.errors.ServingInputError` naming the field (a 4xx), before any
work is queued. Valid requests become :class:`~.adapter.AdaptationJob` s adapted together by
the micro-batcher.

A version trained on implicit events (``label == "event"``) has no rating model: ``/recommend``
ranks with its ranker alone (each support item an interaction, the ranking scale's "liked",
5.0) and answers ``predicted_rating: null``; ``/predict`` is refused (422); ``/feedback`` counts
the online hit rate only. Whether support items carry ratings is checked against the version:
a rating version needs one per item, an event version refuses them (400, ``support[i].rating``).

Ids are the version's kind: integers, or a team's text ids (``c001``, ``sku-001``) for a version
trained on them (its card records them so, and the online store keys them as text). Ids in and
out are then the team's; an id of the other kind is refused (400) naming the field, and the
version must agree with the online store's ids (else the engine refuses to start).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Literal

import numpy as np

from metarec.config import ServingSettings
from metarec.data.schema import RATING_MAX, RATING_MIN
from metarec.errors import ServingInputError, ServingModelError
from metarec.features.store import EntityId
from metarec.serving.adapter import AdaptationJob, BatchedAdapter
from metarec.serving.batching import MicroBatcher
from metarec.serving.factor_adapter import FactorAdapter
from metarec.serving.features import (
    FeatureCache,
    ItemMatrix,
    UserFeatures,
    native_id,
    user_columns,
)
from metarec.serving.loading import ServedModel
from metarec.serving.metrics import ServingMetrics
from metarec.serving.quality import OnlineHitRate, PredictionMemory, RollingMAE
from metarec.serving.ranking import CatalogueRanker, RankingJob
from metarec.serving.schemas import (
    FeedbackEvent,
    FeedbackRequest,
    FeedbackResponse,
    InputFieldInfo,
    Metadata,
    PredictedRating,
    PredictRequest,
    PredictResponse,
    RecommendRequest,
    RecommendResponse,
    ScoredItem,
    SupportRating,
)

# The value of an interaction on the ranking scale: "liked", as a rating of 5 (what the ranker
# of an event version learnt positive interactions as).
INTERACTION = 5.0


def shown(value: EntityId) -> str:
    """An id as an answer shows it: ``7``, or a text id quoted (``'c001'``)."""
    return repr(value) if isinstance(value, str) else str(value)


def _kind(text: bool) -> Literal["text", "integer"]:
    return "text" if text else "integer"


class AdaptationEngine:
    """Adapt-and-score for recommend, predict and feedback; owns the service's state."""

    def __init__(
        self,
        *,
        served: ServedModel,
        features: FeatureCache,
        serving: ServingSettings,
        metrics: ServingMetrics | None = None,
    ) -> None:
        """Wire the loaded model, feature cache, limits and metrics together.

        Args:
            served: The loaded registry version.
            features: Online features of users and items.
            serving: Limits and batching settings.
            metrics: Prometheus metrics (default: new, private).
        """
        self.served = served
        self.features = features
        self.serving = serving
        self.metrics = metrics or ServingMetrics(model_version=served.tag)
        # The rating model: the artifact's factor fold-in when it has one, else MeLU's; none
        # for a version trained on implicit events.
        self.adapter: BatchedAdapter | FactorAdapter | None = None
        if served.adapted is not None:
            self.adapter = (
                BatchedAdapter(served.adapted)
                if served.factor is None
                else FactorAdapter(served.factor, served.encoder)
            )
        self.ranker = (
            None
            if served.ranker is None or served.card.ranker is None
            else CatalogueRanker(
                served.ranker,
                encoder=served.encoder,
                steps=int(served.card.ranker["inner_steps"]),
                blend_weight=float(served.card.ranker["blend_weight"]),
            )
        )
        if self.adapter is None and self.ranker is None:
            raise ServingModelError(
                f"Version {served.tag} has neither a rating model nor a ranker.",
                fix="serve a version trained with `metarec train`.",
            )
        self.text_users = served.text_users
        self.text_items = served.text_items
        self._check_store_ids()
        # On CPU a batch is a few ms of GIL-bound work: on the event loop, not a thread.
        inline = self.adapter is None or self.adapter.device.type == "cpu"
        self.batcher: MicroBatcher[AdaptationJob, np.ndarray] | None = None
        if self.adapter is not None:
            adapter = self.adapter
            self.batcher = MicroBatcher(
                adapter,
                max_batch_size=serving.max_batch_size,
                max_latency_ms=serving.max_latency_ms,
                on_batch=lambda n: self.metrics.observe_batch(n, adapter.steps),
                inline=inline,
            )
        self.rank_batcher: MicroBatcher[RankingJob, np.ndarray] | None = None
        if self.ranker is not None:  # concurrent /recommend requests are ranked together
            ranker = self.ranker

            def ranked(n: int) -> None:  # an event version adapts with its ranker alone
                self.metrics.observe_batch(n, ranker.steps)

            self.rank_batcher = MicroBatcher(
                ranker,
                max_batch_size=serving.max_batch_size,
                max_latency_ms=serving.max_latency_ms,
                on_batch=ranked if self.adapter is None else None,
                inline=inline,
            )
        self.memory = PredictionMemory(capacity=serving.prediction_memory)
        self.quality = RollingMAE(window=serving.quality_window)
        # The last list served per user, to count online hits of positive feedback.
        self.hits = OnlineHitRate(
            capacity=serving.served_list_memory, window=serving.hit_rate_window
        )

    def _check_store_ids(self) -> None:
        """The online store keys users and items by the version's kind of id.

        Raises:
            ServingModelError: A text-id version over a store of integer ids, or the reverse.
        """
        items = self.features.items
        store = {
            "user": getattr(self.features, "text_users", self.text_users),
            "item": getattr(self.features, "text_items", items.item_ids.dtype == np.dtype(object)),
        }
        for side, text in (("user", self.text_users), ("item", self.text_items)):
            if store[side] != text:
                raise ServingModelError(
                    f"Version {self.served.tag} was trained on {_kind(text)} {side} ids, and "
                    f"the online store's {side} ids are {_kind(store[side])}.",
                    fix="apply and materialise the features of the snapshot the version was "
                    "trained on (`metarec features apply`, `metarec features materialize`), or "
                    "serve a version trained on this store's data.",
                )

    def _check_id(self, field: str, side: str, value: EntityId) -> None:
        """A request's id is the version's kind (integer or text).

        Raises:
            ServingInputError: (400) The other kind of id, naming ``field``.
        """
        text = self.text_users if side == "user" else self.text_items
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

    @property
    def predicts_ratings(self) -> bool:
        """Whether the served version predicts ratings (False: trained on implicit events)."""
        return self.adapter is not None

    def warm_up(self) -> None:
        """Adapt once on the first catalogue item, so the first request pays no start-up cost."""
        items = self.features.items
        if len(items.item_ids) == 0:
            return
        zero = np.zeros(items.codes.shape[1], dtype=items.codes.dtype)
        one = np.array([0], dtype=np.int64)
        value = np.array([3.0 if self.predicts_ratings else INTERACTION], np.float32)
        if self.adapter is not None:
            self.adapter([AdaptationJob(items, zero, one, value, one)])
        rest = np.arange(1, len(items.item_ids), dtype=np.int64)
        if self.ranker is not None and len(rest):  # builds the item tower cache too
            self.ranker([RankingJob(items, zero, one, value, rest)])

    async def close(self) -> None:
        """Stop the micro-batchers' worker tasks."""
        for batcher in (self.batcher, self.rank_batcher):
            if batcher is not None:
                await batcher.close()

    # -- validation -------------------------------------------------------------------------

    def _item_rows(self, items: ItemMatrix, field: str, item_ids: Sequence[EntityId]) -> np.ndarray:
        index = items.index
        rows = np.empty(len(item_ids), dtype=np.int64)
        for n, item in enumerate(item_ids):
            row = index.get(item)
            if row is None:  # the other kind of id is never in the index: a 400 says why
                self._check_id(f"{field}[{n}]", "item", item)
                raise ServingInputError(
                    f"{field}[{n}]",
                    f"item {shown(item)} is unknown (it has no features in the online store).",
                    fix="send item ids of the catalogue (see GET /metadata n_items), or "
                    "materialise the item's features.",
                    status=422,
                )
            rows[n] = row
        return rows

    def _check_count(self, field: str, n: int, limit: int) -> None:
        if n > limit:
            raise ServingInputError(
                field,
                f"{n} entries exceed the limit of {limit}.",
                fix=f"send at most {limit} (serving settings), or split the request.",
                status=422,
            )

    async def _user(self, user_id: EntityId | None, field: str = "user_id") -> UserFeatures | None:
        if user_id is None:
            return None
        self._check_id(field, "user", user_id)
        found, user = self.features.cached_user(user_id)
        if not found:  # an online-store read: off the event loop
            user = await asyncio.to_thread(self.features.user, user_id)
        if user is None:
            raise ServingInputError(
                field,
                f"user {shown(user_id)} is unknown (no features in the online store).",
                fix="send a known user id, or omit user_id and send a support set; "
                "materialise new users' features with `metarec features materialize`.",
                status=404,
            )
        return user

    def _support_values(self, support: list[SupportRating]) -> np.ndarray:
        """The support items' values: their ratings, or (event versions) the interaction value.

        Raises:
            ServingInputError: (400) A rating version's item without a rating, or an event
                version's item with one; the field is ``support[i].rating``.
        """
        for n, entry in enumerate(support):
            if self.predicts_ratings and entry.rating is None:
                raise ServingInputError(
                    f"support[{n}].rating",
                    "this version adapts on ratings, and this support item has none.",
                    fix="give each support item its 1-5 rating (GET /metadata: label rating).",
                    status=400,
                )
            if not self.predicts_ratings and entry.rating is not None:
                raise ServingInputError(
                    f"support[{n}].rating",
                    "this version learnt from implicit events and takes no ratings.",
                    fix="send the items the user interacted with, without ratings "
                    "(GET /metadata: label event).",
                    status=400,
                )
        if not self.predicts_ratings:
            return np.full(len(support), INTERACTION, dtype=np.float32)
        return np.array([s.rating for s in support], dtype=np.float32)

    def _support(
        self, items: ItemMatrix, user: UserFeatures | None, support: list[SupportRating] | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Support (item rows, values) from the request or the user's recent ratings.

        A known user without recent ratings in the catalogue (an event snapshot has none) gets
        an empty support set: the lists then come from their attributes alone (cold start).
        """
        limit = self.serving.max_support_size
        matrix = items
        if support is not None:
            if not support:
                raise ServingInputError(
                    "support",
                    "the support set is empty.",
                    fix="send at least one item ({item_id, rating}, or {item_id} for a "
                    "version trained on events), or omit support to use the user's recent "
                    "ratings.",
                )
            self._check_count("support", len(support), limit)
            ids = [s.item_id for s in support]
            ratings = self._support_values(support)
            rows = self._item_rows(matrix, "support", ids)
        elif user is not None:
            # A new user with attributes but no ratings in the catalogue yet: the model's
            # unadapted start from those attributes (an empty support set).
            known = self._recent(matrix, user)
            ids = [i for i, _ in known]
            ratings = np.array([r for _, r in known], dtype=np.float32)
            rows = np.array([matrix.index[i] for i in ids], dtype=np.int64)
        else:
            raise ServingInputError(
                "support",
                "neither user_id nor support was sent.",
                fix="send a user_id (its recent ratings are the support set) or a support set.",
            )
        return rows, ratings

    async def _user_and_support(
        self, items: ItemMatrix, user_id: EntityId | None, support: list[SupportRating] | None
    ) -> tuple[UserFeatures | None, np.ndarray, np.ndarray]:
        """The user's features and the support set (item rows, ratings) of a request."""
        user = await self._user(user_id)
        try:
            rows, ratings = self._support(items, user, support)
        except ServingInputError as exc:
            raise _item_field(exc, "item_id") from None
        return user, rows, ratings

    def _recent(self, matrix: ItemMatrix, user: UserFeatures) -> list[tuple[EntityId, float]]:
        """The user's recent (item, rating) pairs that are in the catalogue, newest first."""
        return [
            (i, r)
            for i, r in zip(user.recent_item_ids, user.recent_ratings, strict=False)
            if i in matrix.index
        ][: self.serving.max_support_size]

    def _user_codes(self, matrix: ItemMatrix, user: UserFeatures | None) -> np.ndarray:
        """The user's encoded row restricted to user columns (zeros for an anonymous request)."""
        codes = np.zeros(matrix.codes.shape[1], dtype=matrix.codes.dtype)
        if user is not None:
            cols = user_columns(self.served.encoder)
            codes[cols] = user.codes[cols]
        return codes

    # -- endpoints ------------------------------------------------------------------------

    async def recommend(self, request: RecommendRequest) -> RecommendResponse:
        """Adapt to the support set; the top-k candidates (support items excluded)."""
        items = self.features.items
        user, support_rows, support_y = await self._user_and_support(
            items, request.user_id, request.support
        )
        self._check_count("k", request.k, self.serving.max_k)
        if request.candidates is None:
            rows = np.arange(len(items.item_ids))
        else:
            self._check_count("candidates", len(request.candidates), self.serving.max_candidates)
            rows = np.unique(self._item_rows(items, "candidates", request.candidates))
        keep = np.ones(len(items.item_ids), dtype=bool)
        keep[support_rows] = False  # support items are not recommended
        rows = rows[keep[rows]]
        if len(rows) == 0:
            return RecommendResponse(model_version=self.served.tag, items=[])
        codes = self._user_codes(items, user)
        if self.rank_batcher is not None:  # the served ranker orders the list
            scores = await self.rank_batcher.submit(
                RankingJob(items, codes, support_rows, support_y, rows)
            )
        else:  # a version trained before ranking existed: ranked by predicted rating
            assert self.batcher is not None  # a version has a ranker or a rating model
            scores = await self.batcher.submit(
                AdaptationJob(items, codes, support_rows, support_y, rows)
            )
        k = min(request.k, len(rows))
        top = np.argpartition(-scores, k - 1)[:k] if k < len(rows) else np.arange(len(rows))
        # Ties go to the smaller id: the item matrix's rows are in ascending id order.
        top = top[np.lexsort((rows[top], -scores[top]))]
        chosen = [native_id(i) for i in items.item_ids[rows[top]]]
        values: list[float | None] = [None] * len(chosen)  # an event version: no ratings
        if self.batcher is not None:
            if self.ranker is not None:  # the rating model predicts the chosen items' ratings
                ratings = await self.batcher.submit(
                    AdaptationJob(items, codes, support_rows, support_y, rows[top])
                )
            else:
                ratings = scores[top]
            predicted = [float(r) for r in np.clip(ratings, RATING_MIN, RATING_MAX)]
            if request.user_id is not None:
                self.memory.remember(request.user_id, chosen, predicted)
            values = list(predicted)
        if request.user_id is not None:
            self.hits.served(request.user_id, chosen)
        scored = zip(chosen, scores[top], values, strict=True)
        return RecommendResponse(
            model_version=self.served.tag,
            items=[ScoredItem(item_id=i, score=float(s), predicted_rating=r) for i, s, r in scored],
        )

    async def predict(self, request: PredictRequest) -> PredictResponse:
        """Adapt to the support set; predicted ratings of ``item_ids`` in request order.

        Raises:
            ServingInputError: (422, field ``endpoint``) The version learnt from implicit
                events and predicts no ratings; and every check of the request's fields.
        """
        if self.batcher is None:
            raise ServingInputError(
                "endpoint",
                f"{self.served.tag} learnt from implicit events and predicts no ratings.",
                fix="ask POST /recommend instead (pass the items as candidates to rank them).",
                status=422,
            )
        items = self.features.items
        user, support_rows, support_y = await self._user_and_support(
            items, request.user_id, request.support
        )
        self._check_count("item_ids", len(request.item_ids), self.serving.max_candidates)
        rows = self._item_rows(items, "item_ids", request.item_ids)
        job = AdaptationJob(items, self._user_codes(items, user), support_rows, support_y, rows)
        ratings = np.clip(await self.batcher.submit(job), RATING_MIN, RATING_MAX)
        values = [float(r) for r in ratings]
        if request.user_id is not None:
            self.memory.remember(request.user_id, list(request.item_ids), values)
        return PredictResponse(
            model_version=self.served.tag,
            predictions=[
                PredictedRating(item_id=i, rating=r)
                for i, r in zip(request.item_ids, values, strict=True)
            ],
        )

    async def feedback(self, request: FeedbackRequest) -> FeedbackResponse:
        """Count the online hit rate; score rated events against predictions (online MAE).

        Every event counts for the hit rate (positive: no rating, or a rating >= 4). Events
        with a rating are also scored for the online MAE, when the version predicts ratings:
        against the remembered prediction, else one made now.
        """
        items = self.features.items
        events = request.events
        self._check_count("events", len(events), self.serving.max_feedback_events)
        try:
            self._item_rows(items, "events", [e.item_id for e in events])
        except ServingInputError as exc:
            raise _item_field(exc, "item_id") from None
        users: dict[EntityId, UserFeatures] = {}
        for n, event in enumerate(events):
            if event.user_id not in users:
                found = await self._user(event.user_id, field=f"events[{n}].user_id")
                assert found is not None
                users[event.user_id] = found
        if self.batcher is not None:
            rated = [e for e in events if e.rating is not None]
            if rated:
                await self._score_ratings(items, rated, users, self.batcher)
        counted = self.hits.score((e.user_id, e.item_id, e.rating) for e in events)
        self.metrics.observe_hits(counted.positives, counted.hits, counted.rate)
        return FeedbackResponse(accepted=len(events))

    async def _score_ratings(
        self,
        items: ItemMatrix,
        events: list[FeedbackEvent],
        users: dict[EntityId, UserFeatures],
        batcher: MicroBatcher[AdaptationJob, np.ndarray],
    ) -> None:
        """Score rated feedback events for the online MAE (a version that predicts ratings)."""
        predicted: list[float | None] = [self.memory.get(e.user_id, e.item_id) for e in events]
        missing: dict[EntityId, list[int]] = {}
        for n, value in enumerate(predicted):
            if value is None:
                missing.setdefault(events[n].user_id, []).append(n)
        jobs = []
        for user_id, positions in missing.items():
            user = users[user_id]
            known = self._recent(items, user)
            support_rows = np.array([items.index[i] for i, _ in known], dtype=np.int64)
            query_rows = self._item_rows(items, "events", [events[n].item_id for n in positions])
            job = AdaptationJob(
                items,
                self._user_codes(items, user),
                support_rows,
                np.array([r for _, r in known], np.float32),
                query_rows,
            )
            jobs.append(batcher.submit(job))
        for (user_id, positions), values in zip(
            missing.items(), await asyncio.gather(*jobs), strict=True
        ):
            values = np.clip(values, RATING_MIN, RATING_MAX)
            for n, value in zip(positions, values, strict=True):
                predicted[n] = float(value)
            self.memory.remember(
                user_id, [events[n].item_id for n in positions], [float(v) for v in values]
            )
        errors = [
            abs(float(p) - float(e.rating))  # type: ignore[arg-type]
            for p, e in zip(predicted, events, strict=True)
        ]
        mae = self.quality.add(errors)
        self.metrics.observe_feedback(errors, mae)

    def metadata(self, *, stage: str) -> Metadata:
        """What is served, with its adaptation rule and limits."""
        served = self.served
        adapted = served.adapted
        if adapted is not None:
            steps = adapted.inner.steps
            lr = None if adapted.use_meta_sgd else adapted.inner.lr
            meta_sgd: bool | None = adapted.use_meta_sgd
        else:  # an event version: the ranker adapts (its learnt per-dimension rates)
            assert self.ranker is not None
            steps, lr, meta_sgd = self.ranker.steps, None, None
        return Metadata(
            model=served.info.model,
            version=served.info.version,
            model_version=served.tag,
            stage=stage,
            feature_service="online_adaptation",
            label="rating" if served.predicts_ratings else "event",
            algorithm=served.card.algorithm,
            rating_model=served.rating_model,
            adaptation_steps=steps,
            adaptation_lr=lr,
            meta_sgd=meta_sgd,
            n_items=len(self.features.items.item_ids),
            user_ids=_kind(self.text_users),
            item_ids=_kind(self.text_items),
            features_materialized_at=self.features.materialized_at,
            input_fields=[InputFieldInfo(**f) for f in served.encoder.describe()],
            max_support_size=self.serving.max_support_size,
            max_candidates=self.serving.max_candidates,
            max_batch_size=self.serving.max_batch_size,
        )


def _item_field(exc: ServingInputError, suffix: str) -> ServingInputError:
    """``support[3]`` → ``support[3].item_id`` for unknown support (or feedback) items."""
    if exc.field.startswith(("support[", "events[")) and exc.field.endswith("]"):
        return ServingInputError(
            f"{exc.field}.{suffix}", exc.problem.split(": ", 1)[-1], fix=exc.fix, status=exc.status
        )
    return exc
