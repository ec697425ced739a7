"""The ``@bentoml.service`` adaptation service.

Run it with ``bentoml serve metarec.serving.service:AdaptationService`` (or ``metarec serve``).

Which version it serves comes from the settings (``METAREC_SERVING__VERSION`` or
``METAREC_SERVING__STAGE``; ``metarec serve`` sets them). Endpoints (JSON over HTTP):
``POST /recommend``, ``POST /predict``, ``POST /feedback``, ``GET /metadata``, plus BentoML's
``/livez``, ``/readyz`` and ``/metrics``. Bad input is answered with a 4xx naming the field.
``/feedback`` requires the bearer token ``serving.feedback_token`` (refused without one:
:mod:`metarec.serving.feedback_auth`); on a cluster only ``/recommend``, ``/predict`` and the
health paths are routed from the Gateway.

A service started for a stage (no pinned version) follows the registry: every
``serving.registry_poll_seconds`` it asks which version is in the stage and swaps in a newly
promoted one without a restart (:mod:`metarec.serving.reload`), so pods started before and after
a promotion serve the same version.

With ``serving.direct_endpoints`` (the default) the three ``POST`` endpoints are a mounted
Starlette app (:mod:`metarec.serving.endpoints`), kept out of BentoML's access log and traces by
the service's config; otherwise they are ``@bentoml.api`` methods that BentoML answers with all
its layers. The answers are the same either way.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import bentoml
from fastapi import FastAPI
from pydantic import BaseModel
from starlette.responses import JSONResponse

from metarec.config import Settings, load_settings
from metarec.environment import apply_process_environment
from metarec.errors import MetaRecError, ServingInputError
from metarec.serving.endpoints import (
    JsonEndpoint,
    document_endpoints,
    json_app,
    skip_logging_and_tracing,
)
from metarec.serving.feedback_auth import FeedbackGate, caller_is_trusted
from metarec.serving.http import MetricsSink, RequestGuard
from metarec.serving.metrics import ServingMetrics
from metarec.serving.reload import EngineSlot, FollowerParts, RegistryFollower, ReloadMetrics
from metarec.serving.schemas import (
    FeedbackRequest,
    FeedbackResponse,
    Metadata,
    PredictRequest,
    PredictResponse,
    RecommendRequest,
    RecommendResponse,
)
from metarec.serving.startup import exit_if_supervised

_BOOT_SETTINGS = load_settings()
apply_process_environment(_BOOT_SETTINGS)
# The request guard is built by BentoML from these options before the instance exists; the
# instance binds its metrics into the sink when its model is loaded.
_SINK = MetricsSink()
SERVICE_NAME = "metarec_adaptation"
logger = logging.getLogger(__name__)
EngineCall = Callable[[Any], Awaitable[Any]]
# Net new objects between two young collections (CPython's default is 700): above what the
# requests in flight hold at once, so a young collection no longer traverses (and promotes)
# the objects of requests still being answered.
YOUNG_COLLECTION_THRESHOLD = 10_000
# Middle-generation collections between two full ones (CPython's default is 10).
FULL_COLLECTION_EVERY = 100
# BentoML's request timeout (traffic.timeout): a 504 for a request that takes longer.
REQUEST_TIMEOUT_S = 30


def tune_garbage_collector() -> None:
    """Keep garbage collections rare and short once the model is loaded.

    Everything loaded at start-up (≈0.5 M objects: torch, Feast, BentoML) lives as long as the
    process; a full collection traverses it (≈0.25 s here), a pause every request in flight
    waits for. Frozen objects are skipped. BentoML's request timeout keeps a timer and a future
    per request alive for ``traffic.timeout`` seconds (with its OpenTelemetry span where the
    path is traced), so after the freeze CPython's "25 % new long-lived objects" rule would
    start a full collection about every second under load; one every
    ``FULL_COLLECTION_EVERY`` middle-generation collections spaces them out instead.
    With CPython's young threshold (700 net new objects) the objects of the 16 or so requests
    in flight crossed it every few requests: ≈ 35 µs of collection per request, against
    ≈ 2 µs at ``YOUNG_COLLECTION_THRESHOLD`` (measured in docs/serving.md).
    """
    gc.freeze()
    _, middle, _ = gc.get_threshold()
    gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, middle, FULL_COLLECTION_EVERY)


def _error(exc: ServingInputError) -> JSONResponse:
    return JSONResponse({"error": str(exc), "field": exc.field}, status_code=exc.status)


async def _answer(call: EngineCall, request: BaseModel) -> Any:
    """The engine's answer to a validated request, or the 4xx of its input check."""
    try:
        return await call(request)
    except ServingInputError as exc:
        return _error(exc)


def _engine_handler(name: str) -> Callable[[BaseModel], Awaitable[Any]]:
    """A mounted endpoint's handler: the running instance's engine method ``name``."""

    async def handle(request: BaseModel) -> Any:
        service: _Adaptation = bentoml.get_current_service()
        async with service.slot.lease() as engine:  # a swap waits for it to be answered
            return await _answer(getattr(engine, name), request)

    return handle


JSON_ENDPOINTS = (
    JsonEndpoint(
        "/recommend",
        RecommendRequest,
        RecommendResponse,
        _engine_handler("recommend"),
        "Adapt to the user's support set (or recent ratings) and return the top-k items.",
    ),
    JsonEndpoint(
        "/predict",
        PredictRequest,
        PredictResponse,
        _engine_handler("predict"),
        "Adapt to the user's support set and predict ratings of the given items (versions "
        "trained on ratings; an event version answers 422).",
    ),
    JsonEndpoint(
        "/feedback",
        FeedbackRequest,
        FeedbackResponse,
        _engine_handler("feedback"),
        "Score observed ratings and interactions against what was served (online MAE, hit "
        "rate). Requires 'Authorization: Bearer <serving.feedback_token>'.",
        needs_token=True,
    ),
)


def _metadata() -> Metadata:
    """The served model name, version, stage, feature service, adaptation rule and limits."""
    service: _Adaptation = bentoml.get_current_service()
    return service.metadata()


def _fastapi_app(*, documented: tuple[JsonEndpoint, ...]) -> FastAPI:
    """The mounted FastAPI app: ``GET /metadata``, and ``documented`` for the OpenAPI document.

    BentoML APIs are POST, so GET endpoints live in a mounted app; BentoML merges a mounted
    FastAPI app's OpenAPI into the service's. Handlers reach the instance through
    ``bentoml.get_current_service``.
    """
    app = FastAPI(title="metarec adaptation", docs_url=None, redoc_url=None)
    app.add_api_route(
        "/metadata", _metadata, methods=["GET"], response_model=Metadata, summary="What is served"
    )
    document_endpoints(app, documented, server_name=SERVICE_NAME)
    return app


def build_engine(settings: Settings, *, version: str | None = None) -> Any:
    """Load a version (checksum verified), its item features and metrics; warm it up.

    Args:
        settings: MetaRec settings.
        version: Tag to load (``metarec:v3``); default the settings' version or stage.

    Returns:
        The :class:`~metarec.serving.engine.AdaptationEngine`, ready for requests.
    """
    # Imported here, not at the top: `bentoml serve` imports this module in its own process
    # only to read the service's definition; torch and Feast (≈ 9 s of imports on a small
    # machine) are needed only where the instance is built, in the worker.
    from metarec.features.freshness import MaterializationReader
    from metarec.serving.drift_alerts import drift_alarm
    from metarec.serving.drift_reference import served_drift_reference
    from metarec.serving.engine import AdaptationEngine
    from metarec.serving.features import FeatureCache
    from metarec.serving.loading import load_served_model

    served = load_served_model(settings, version=version)
    features = FeatureCache(settings, encoder=served.encoder)
    metrics = ServingMetrics(
        model_version=served.tag, materializations=MaterializationReader(settings)
    )
    engine = AdaptationEngine(
        served=served,
        features=features,
        serving=settings.serving,
        metrics=metrics,
        remembers=caller_is_trusted,  # only a trusted caller's answers are scored later
        drift_reference=served_drift_reference(
            settings, info=served.info, card=served.card, data=served.drift_file
        ),
        drift_alarm=drift_alarm(settings, model_version=served.tag),
    )
    engine.warm_up()
    metrics.observe_freshness()
    return engine


def _bind_metrics(engine: Any) -> None:
    """Count requests under the engine's version from now on (a swapped-in engine)."""
    _SINK.bind(engine.metrics)
    gc.freeze()  # the new version's objects live until the next swap, like the first's


class _Adaptation:
    """Adapt a registry version to each user's few ratings, inside the request."""

    def __init__(self) -> None:
        """Load the version (checksum verified), the item features, and start the refresher.

        A failure ends a worker supervised by ``metarec serve`` with one line
        (:mod:`metarec.serving.startup`) instead of BentoML restarting it forever.
        """
        try:
            self._start()
        except Exception as exc:
            exit_if_supervised(exc)
            raise

    def _start(self) -> None:
        import torch

        from metarec.registry.service import Registry

        settings = load_settings()
        self.settings = settings
        if settings.serving.torch_threads:
            torch.set_num_threads(settings.serving.torch_threads)
        self.slot: EngineSlot[Any] = EngineSlot(build_engine(settings))
        tune_garbage_collector()
        self.registry = Registry.open(settings)
        self.follower = self._follower()
        self._following: asyncio.Task[None] | None = None
        self._stop = threading.Event()
        self._refresher = threading.Thread(
            target=self._refresh_loop, name="metarec-feature-refresh", daemon=True
        )
        self._refresher.start()
        _SINK.bind(self.engine.metrics)
        if not FeedbackGate(settings.serving.feedback_token).enabled:
            logger.warning(
                "POST /feedback is refused (403): serving.feedback_token is not set. Set "
                "METAREC_SERVING__FEEDBACK_TOKEN to take feedback (online MAE and hit rate)."
            )

    @property
    def engine(self) -> Any:
        """The engine new requests go to (another after a promotion, see :meth:`_follower`)."""
        return self.slot.engine

    def _follower(self) -> RegistryFollower[Any] | None:
        """What swaps in the stage's new version; None for a pinned version or polling off."""
        serving = self.settings.serving
        if serving.version or not serving.registry_poll_seconds:
            return None
        parts = FollowerParts(
            staged=self._staged_tag,
            load=lambda tag: build_engine(self.settings, version=tag),
            tag=lambda engine: engine.served.tag,
            on_swap=_bind_metrics,
        )
        return RegistryFollower(
            self.slot,
            parts,
            poll_seconds=serving.registry_poll_seconds,
            drain_timeout=REQUEST_TIMEOUT_S,
            metrics=ReloadMetrics(),
        )

    def _staged_tag(self) -> str:
        """The tag of the version now in the served stage (one registry query)."""
        from metarec.serving.loading import resolve_version

        settings = self.settings
        model = settings.registry.model_name
        stage = settings.serving.stage
        return resolve_version(self.registry, model=model, version=None, stage=stage).tag

    @bentoml.on_startup
    async def follow_registry(self) -> None:
        """Start following the registry on the service's event loop (stage services only)."""
        if self.follower is not None:
            self._following = asyncio.get_running_loop().create_task(self.follower.run())

    def _refresh_loop(self) -> None:
        interval = self.settings.serving.feature_refresh_seconds
        while not self._stop.wait(interval):
            self.engine.metrics.observe_freshness()  # never raises: a failure is a gauge
            try:
                self.engine.features.refresh()
            except Exception:  # a failed check keeps the cached features; retried next tick
                continue

    @bentoml.on_shutdown
    async def shutdown(self) -> None:
        """Stop the refresher, the registry follower and the batcher; close the registry."""
        self._stop.set()
        if self._following is not None:
            self._following.cancel()
        await self.engine.close()
        self.registry.close()

    def _stage(self) -> str:
        from metarec.registry.types import VersionRef

        info = self.engine.served.info
        try:
            return self.registry.get_version(
                VersionRef(model=info.model, version=info.version)
            ).stage.value
        except MetaRecError:
            return info.stage.value

    def metadata(self) -> Metadata:
        """The served model, version, stage, feature service and limits."""
        return self.engine.metadata(stage=self._stage())


class _AnsweredByBentoML(_Adaptation):
    """The JSON endpoints as ``@bentoml.api`` methods (``serving.direct_endpoints: false``)."""

    @bentoml.api(input_spec=RecommendRequest, output_spec=RecommendResponse)
    async def recommend(self, **fields: Any) -> RecommendResponse | JSONResponse:
        """Adapt to the user's support set (or recent ratings) and return the top-k items."""
        async with self.slot.lease() as engine:
            return await _answer(engine.recommend, RecommendRequest.model_construct(**fields))

    @bentoml.api(input_spec=PredictRequest, output_spec=PredictResponse)
    async def predict(self, **fields: Any) -> PredictResponse | JSONResponse:
        """Adapt to the user's support set; predict ratings of the given items (rating versions)."""
        async with self.slot.lease() as engine:
            return await _answer(engine.predict, PredictRequest.model_construct(**fields))

    @bentoml.api(input_spec=FeedbackRequest, output_spec=FeedbackResponse)
    async def feedback(self, **fields: Any) -> FeedbackResponse | JSONResponse:
        """Score observed ratings and interactions against what was served (MAE, hit rate)."""
        async with self.slot.lease() as engine:
            return await _answer(engine.feedback, FeedbackRequest.model_construct(**fields))


def _build_service(*, direct_endpoints: bool) -> Any:
    """The ``@bentoml.service``: its class, config, mounted apps and middleware.

    Mounted apps are matched in the order they are mounted: the Starlette app of the JSON
    endpoints before the FastAPI app (which declares them too, for the OpenAPI document).
    The request guard (body limit, content type, metarec request metrics) is the service's
    ASGI middleware: it sees every request, on either path.
    """
    options: dict[str, Any] = {"name": SERVICE_NAME, "workers": 1}
    options["traffic"] = {"timeout": REQUEST_TIMEOUT_S}
    mounted = JSON_ENDPOINTS if direct_endpoints else ()
    if mounted:
        options |= skip_logging_and_tracing([e.path for e in mounted])
    service = bentoml.service(**options)(_Adaptation if mounted else _AnsweredByBentoML)
    if mounted:
        service.mount_asgi_app(json_app(mounted, server_name=SERVICE_NAME), path="/")
    service.mount_asgi_app(_fastapi_app(documented=mounted), path="/")
    service.add_asgi_middleware(
        RequestGuard,
        max_body_bytes=_BOOT_SETTINGS.serving.max_body_bytes,
        sink=_SINK,
        feedback_token=_BOOT_SETTINGS.serving.feedback_token,
    )
    return service


AdaptationService = _build_service(direct_endpoints=_BOOT_SETTINGS.serving.direct_endpoints)
