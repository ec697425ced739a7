"""FastAPI application factory for the control plane.

The same operations as ``metarec models`` and ``metarec gate``, through the same use cases
(:mod:`metarec.ops`). Every call but the probes, the OpenAPI document and (unless
``registry.read_requires_token``) the reads needs ``Authorization: Bearer <token>`` of a named
identity (:mod:`metarec.api.identities`) holding the call's role; the request guard
(:mod:`metarec.api.guard`) bounds the body and authenticates before any body is parsed (401
before 422, 413 unread). Every deliberate error is a JSON body ``{error, problem, fix}`` with
a 4xx status; OpenAPI is served at ``/openapi.json`` and ``/docs``. The routes are in
:mod:`metarec.api.routes`, one router per concern.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from fastapi import FastAPI

from metarec import __version__
from metarec.api.deps import Evaluators
from metarec.api.errors import ERROR_RESPONSES, add_error_handlers
from metarec.api.guard import GuardPolicy, RequestGuard
from metarec.api.identities import IdentityBook
from metarec.api.routes import candidates, flagger, health, models, transitions
from metarec.config import Settings
from metarec.gate.run import Evaluator, RankingEvaluator
from metarec.ops.notifications import build_notifier
from metarec.registry import Registry


def _lifespan(
    settings: Settings, *, owned: bool
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """Open the registry at startup (unless one was given) and close the one it opened.

    The notifier (webhooks of the Flagger verdicts) is closed at shutdown, after waiting up to
    ``notifications.flush_timeout_s`` for its pending deliveries.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if app.state.registry is None:
            app.state.registry = Registry.open(settings)
        try:
            yield
        finally:
            app.state.notifier.close(timeout_s=settings.notifications.flush_timeout_s)
            if owned and app.state.registry is not None:
                app.state.registry.close()
                app.state.registry = None

    return lifespan


def create_app(
    settings: Settings,
    *,
    registry: Registry | None = None,
    evaluate: Evaluator | None = None,
    evaluate_ranking: RankingEvaluator | None = None,
) -> FastAPI:
    """Build the control-plane application.

    Args:
        settings: MetaRec settings (registry location, token, gate policy).
        registry: An open registry to use (default: open the configured one at startup and
            close it at shutdown).
        evaluate: Re-evaluates production's rating metrics on the candidate's held-out users
            in the gate.
        evaluate_ranking: Re-evaluates production's ranking table on the candidate's held-out
            users in the gate.

    Returns:
        The FastAPI application.

    Raises:
        ConfigError: ``registry.api_tokens_file`` is missing or invalid.
    """
    identities = IdentityBook.from_settings(settings)
    app = FastAPI(
        title="MetaRec control plane",
        version=__version__,
        description="Model registry, evaluation gate and promotion ledger. Calls need "
        "`Authorization: Bearer <token>` of an identity holding the call's role (reads only "
        "when the server requires it).",
        lifespan=_lifespan(settings, owned=registry is None),
        responses=ERROR_RESPONSES,
    )
    app.state.registry = registry
    app.state.settings = settings
    app.state.evaluators = Evaluators(rating=evaluate, ranking=evaluate_ranking)
    app.state.notifier = build_notifier(settings)
    add_error_handlers(app)
    for module in (health, models, candidates, transitions, flagger):
        app.include_router(module.router)
    app.add_middleware(RequestGuard, policy=_policy(app, settings, identities))
    return app


def _policy(app: FastAPI, settings: Settings, identities: IdentityBook) -> GuardPolicy:
    """The guard's policy: the probes and the OpenAPI pages are read without a token."""
    pages = (app.openapi_url, app.docs_url, app.redoc_url, app.swagger_ui_oauth2_redirect_url)
    return GuardPolicy(
        identities=identities,
        max_body_bytes=settings.registry.api_max_body_bytes,
        open_reads=not settings.registry.read_requires_token,
        public_paths=frozenset({"/healthz", "/readyz", *(page for page in pages if page)}),
    )
