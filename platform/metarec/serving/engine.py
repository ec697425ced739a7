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

The engine wires the parts together: :mod:`.request_checks` (ids, known items, counts),
:mod:`.support` (support sets and the user's row), :mod:`.models` (the rating model and the
ranker) and :mod:`.feedback_scoring` (rated feedback against predictions, the online MAE).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

import numpy as np

from metarec.config import ServingSettings
from metarec.data.schema import RATING_MAX, RATING_MIN
from metarec.errors import ServingInputError
from metarec.features.store import EntityId
from metarec.serving.adapter import AdaptationJob
from metarec.serving.batching import MicroBatcher
from metarec.serving.drift import DriftMonitor
from metarec.serving.drift_calibration import Problem, reference_scores
from metarec.serving.features import FeatureCache, ItemMatrix, UserFeatures, native_id
from metarec.serving.feedback_scoring import rating_errors
from metarec.serving.loading import ServedModel
from metarec.serving.metrics import ServingMetrics
from metarec.serving.models import served_models
from metarec.serving.quality import OnlineHitRate, PredictionMemory, RollingMAE, offline_quality
from metarec.serving.ranking import RankingJob
from metarec.serving.request_checks import (
    check_count,
    check_id,
    check_store_ids,
    id_kind,
    item_field,
    item_rows,
    shown,
)
from metarec.serving.schemas import (
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
from metarec.serving.support import INTERACTION, support_set, user_codes
from metarec.training.drift_profile import DriftReference

logger = logging.getLogger(__name__)


class AdaptationEngine:
    """Adapt-and-score for recommend, predict and feedback; owns the service's state."""

    def __init__(
        self,
        *,
        served: ServedModel,
        features: FeatureCache,
        serving: ServingSettings,
        metrics: ServingMetrics | None = None,
        remembers: Callable[[], bool] | None = None,
        drift_reference: DriftReference | None = None,
        drift_alarm: Callable[[dict[str, float | None], int], None] | None = None,
    ) -> None:
        """Wire the loaded model, feature cache, limits and metrics together.

        Args:
            served: The loaded registry version.
            features: Online features of users and items.
            serving: Limits and batching settings.
            metrics: Prometheus metrics (default: new, private).
            remembers: Whether the request being answered is remembered for scoring later
                feedback (its predictions and list); the service passes
                :func:`~metarec.serving.feedback_auth.caller_is_trusted`. Default: every one.
            drift_reference: The version's training reference for the drift gauges
                (:func:`~metarec.serving.drift_reference.served_drift_reference`); None: only
                the cold-start share and the window's size are exported.
            drift_alarm: Told of each refresh of the drift gauges
                (:func:`~metarec.serving.drift_alerts.drift_alarm`).

        Raises:
            ServingModelError: The version has neither a rating model nor a ranker, or its kind
                of ids is not the online store's.
        """
        self.served = served
        self.features = features
        self.serving = serving
        self.metrics = metrics or ServingMetrics(model_version=served.tag)
        self.remembers = remembers or (lambda: True)
        # The rating model (factor fold-in, else MeLU's; none for a version trained on
        # implicit events) and the ranker (none for a version trained before ranking existed).
        self.adapter, self.ranker = served_models(served)
        self.text_users = served.text_users
        self.text_items = served.text_items
        check_store_ids(
            features, tag=served.tag, text_users=self.text_users, text_items=self.text_items
        )
        self.batcher, self.rank_batcher = self._batchers()
        self.memory = PredictionMemory(capacity=serving.prediction_memory)
        self.quality = RollingMAE(window=serving.quality_window)
        # The last list served per user, to count online hits of positive feedback.
        self.hits = OnlineHitRate(
            capacity=serving.served_list_memory, window=serving.hit_rate_window
        )
        self.drift = self._monitoring(drift_reference, drift_alarm)

    def _monitoring(
        self,
        reference: DriftReference | None,
        alarm: Callable[[dict[str, float | None], int], None] | None,
    ) -> DriftMonitor:
        """Set the offline-quality gauges from the card; the drift monitor of the version."""
        served, serving = self.served, self.serving
        card = served.card
        offline = offline_quality(card.metrics, card.ranking, rating_method=served.rating_model)
        self.metrics.observe_offline(*offline)
        return DriftMonitor(
            model_version=served.tag,
            registry=self.metrics.registry,
            reference=reference,
            window=serving.drift_window_requests,
            min_requests=serving.drift_min_requests,
            refresh_seconds=serving.drift_refresh_seconds,
            on_refresh=alarm,
        )

    def _batchers(
        self,
    ) -> tuple[
        MicroBatcher[AdaptationJob, np.ndarray] | None, MicroBatcher[RankingJob, np.ndarray] | None
    ]:
        """The micro-batchers of the rating model and of the ranker (None where there is none)."""
        serving = self.serving
        # On CPU a batch is a few ms of GIL-bound work: on the event loop, not a thread.
        inline = self.adapter is None or self.adapter.device.type == "cpu"
        batcher: MicroBatcher[AdaptationJob, np.ndarray] | None = None
        if self.adapter is not None:
            adapter = self.adapter
            batcher = MicroBatcher(
                adapter,
                max_batch_size=serving.max_batch_size,
                max_latency_ms=serving.max_latency_ms,
                on_batch=lambda n: self.metrics.observe_batch(n, adapter.steps),
                inline=inline,
            )
        rank_batcher: MicroBatcher[RankingJob, np.ndarray] | None = None
        if self.ranker is not None:  # concurrent /recommend requests are ranked together
            ranker = self.ranker

            def ranked(n: int) -> None:  # an event version adapts with its ranker alone
                self.metrics.observe_batch(n, ranker.steps)

            rank_batcher = MicroBatcher(
                ranker,
                max_batch_size=serving.max_batch_size,
                max_latency_ms=serving.max_latency_ms,
                on_batch=ranked if self.adapter is None else None,
                inline=inline,
            )
        return batcher, rank_batcher

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
        self._calibrate_drift()

    def _calibrate_drift(self) -> None:
        """Fix the predicted-score bins from the reference's users; never raises."""
        reference = self.drift.reference
        if reference is None or not reference.samples:
            return

        def codes(user_id: EntityId) -> np.ndarray:
            found, user = self.features.cached_user(user_id)
            user = user if found else self.features.user(user_id)
            return self._user_codes(self.features.items, user)

        def score(problems: list[Problem]) -> list[np.ndarray]:
            if self.ranker is not None:
                return self.ranker([RankingJob(*p) for p in problems])
            assert self.adapter is not None  # a version has a ranker or a rating model
            return self.adapter([AdaptationJob(*p) for p in problems])

        try:
            scores = reference_scores(
                reference.samples,
                self.features.items,
                codes=codes,
                score=score,
                interactions=not self.predicts_ratings,
                k=RecommendRequest.model_fields["k"].default,  # a request's default list
                batch=self.serving.max_batch_size,
            )
        except Exception as exc:  # monitoring never stops a version from serving
            logger.warning("drift: cannot score the reference users (%s)", exc)
            return
        self.drift.set_score_reference(scores)

    async def close(self) -> None:
        """Stop the micro-batchers' worker tasks."""
        for batcher in (self.batcher, self.rank_batcher):
            if batcher is not None:
                await batcher.close()

    # -- request inputs ---------------------------------------------------------------------

    def _item_rows(self, items: ItemMatrix, field: str, item_ids: Sequence[EntityId]) -> np.ndarray:
        return item_rows(items, field, item_ids, text_items=self.text_items)

    async def _user(self, user_id: EntityId | None, field: str = "user_id") -> UserFeatures | None:
        if user_id is None:
            return None
        check_id(field, "user", user_id, text=self.text_users)
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

    async def _user_and_support(
        self, items: ItemMatrix, user_id: EntityId | None, support: list[SupportRating] | None
    ) -> tuple[UserFeatures | None, np.ndarray, np.ndarray]:
        """The user's features and the support set (item rows, ratings) of a request."""
        user = await self._user(user_id)
        try:
            rows, ratings = support_set(
                items,
                user,
                support,
                limit=self.serving.max_support_size,
                predicts_ratings=self.predicts_ratings,
                text_items=self.text_items,
            )
        except ServingInputError as exc:
            raise item_field(exc, "item_id") from None
        return user, rows, ratings

    def _user_codes(self, matrix: ItemMatrix, user: UserFeatures | None) -> np.ndarray:
        """The user's encoded row restricted to user columns (zeros for an anonymous request)."""
        return user_codes(self.served.encoder, matrix, user)

    # -- endpoints ------------------------------------------------------------------------

    async def recommend(self, request: RecommendRequest) -> RecommendResponse:
        """Adapt to the support set; the top-k candidates (support items excluded)."""
        items = self.features.items
        user, support_rows, support_y = await self._user_and_support(
            items, request.user_id, request.support
        )
        check_count("k", request.k, self.serving.max_k)
        if request.candidates is None:
            rows = np.arange(len(items.item_ids))
        else:
            check_count("candidates", len(request.candidates), self.serving.max_candidates)
            rows = np.unique(self._item_rows(items, "candidates", request.candidates))
        keep = np.ones(len(items.item_ids), dtype=bool)
        keep[support_rows] = False  # support items are not recommended
        rows = rows[keep[rows]]
        if len(rows) == 0:
            self.drift.record(items, support_rows)
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
            if request.user_id is not None and self.remembers():
                self.memory.remember(request.user_id, chosen, predicted)
            values = list(predicted)
        if request.user_id is not None and self.remembers():
            self.hits.served(request.user_id, chosen)
        self.drift.record(items, support_rows, scores=scores[top])
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
        check_count("item_ids", len(request.item_ids), self.serving.max_candidates)
        rows = self._item_rows(items, "item_ids", request.item_ids)
        job = AdaptationJob(items, self._user_codes(items, user), support_rows, support_y, rows)
        ratings = np.clip(await self.batcher.submit(job), RATING_MIN, RATING_MAX)
        self.drift.record(items, support_rows)
        values = [float(r) for r in ratings]
        if request.user_id is not None and self.remembers():
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
        check_count("events", len(events), self.serving.max_feedback_events)
        try:
            self._item_rows(items, "events", [e.item_id for e in events])
        except ServingInputError as exc:
            raise item_field(exc, "item_id") from None
        users: dict[EntityId, UserFeatures] = {}
        for n, event in enumerate(events):
            if event.user_id not in users:
                found = await self._user(event.user_id, field=f"events[{n}].user_id")
                assert found is not None
                users[event.user_id] = found
        if self.batcher is not None:
            rated = [e for e in events if e.rating is not None]
            if rated:
                errors = await rating_errors(
                    items,
                    rated,
                    users,
                    self.batcher,
                    memory=self.memory,
                    encoder=self.served.encoder,
                    max_support_size=self.serving.max_support_size,
                    text_items=self.text_items,
                )
                self.metrics.observe_feedback(errors, self.quality.add(errors))
        counted = self.hits.score((e.user_id, e.item_id, e.rating) for e in events)
        self.metrics.observe_hits(counted.positives, counted.hits, counted.rate)
        return FeedbackResponse(accepted=len(events))

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
            user_ids=id_kind(self.text_users),
            item_ids=id_kind(self.text_items),
            features_materialized_at=self.features.materialized_at,
            input_fields=[InputFieldInfo(**f) for f in served.encoder.describe()],
            max_support_size=self.serving.max_support_size,
            max_candidates=self.serving.max_candidates,
            max_batch_size=self.serving.max_batch_size,
        )
