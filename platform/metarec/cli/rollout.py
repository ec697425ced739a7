"""``metarec rollout …``: start, watch, abort and run canary rollouts; deploy a version."""

from __future__ import annotations

import json
import signal
import threading
from contextlib import ExitStack
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from metarec.cli.console import console
from metarec.cli.options import default_actor, version_ref
from metarec.config import Settings
from metarec.errors import ConfigError, RolloutNotFoundError
from metarec.router_config import HTTPRouterConfig, LocalRouterConfig

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

app = typer.Typer(
    help="Canary rollouts: shift traffic in steps, analyse, promote or roll back.",
    no_args_is_help=True,
)


def _open(settings: Settings) -> tuple[Any, Any]:
    from metarec.registry import Registry
    from metarec.rollout.store import RolloutStore

    registry = Registry.open(settings)
    return registry, RolloutStore(engine=registry.engine)


def _print_state(state: Any) -> None:
    console.print(
        f"rollout [bold]{state.id}[/bold] of {state.model}:v{state.version} "
        f"(production before: {state.production_version and f'v{state.production_version}'})"
    )
    console.print(
        f"  phase [bold]{state.phase.value}[/bold], step {state.step_index + 1}/"
        f"{len(state.spec.steps)}, weights production {100 - state.canary_weight} % / canary "
        f"{state.canary_weight} %, failed checks in a row {state.failed_checks}"
        + (" , abort requested" if state.abort_requested else "")
    )
    if state.message:
        console.print(f"  {state.message}", highlight=False)
    for note in state.spec.notes:
        console.print(f"  note: {note}", highlight=False)


StepsOption = Annotated[str, typer.Option(help="Canary weights in percent.")]
IntervalOption = Annotated[str, typer.Option(help="Analysis window per step (30s, 2m).")]
MaxErrorRateOption = Annotated[float, typer.Option(help="Highest canary 5xx share.")]
MaxP99Option = Annotated[
    float | None, typer.Option(help="Highest canary latency p99 in ms (unset: unchecked).")
]
MaxMaeDeltaOption = Annotated[
    float | None,
    typer.Option(
        help="Highest canary − production online MAE (unset: unchecked; always off when a "
        "version learnt from implicit events)."
    ),
]
MaxHitRateDropOption = Annotated[
    float | None,
    typer.Option(
        help="Largest drop of the canary's online hit rate below production's, 0..1 "
        "(unset: unchecked, or 0.05 when a version learnt from implicit events)."
    ),
]
FailureThresholdOption = Annotated[
    int, typer.Option(help="Failed windows in a row that roll back.")
]
MinRequestsOption = Annotated[
    int, typer.Option(help="Canary requests a window needs for a verdict.")
]
MinFeedbackOption = Annotated[
    int, typer.Option(help="Feedback events per service for the MAE verdict.")
]
MinPositiveFeedbackOption = Annotated[
    int, typer.Option(help="Positive feedback events per service for the hit-rate verdict.")
]
MaxWaitIntervalsOption = Annotated[
    int,
    typer.Option(
        help="Intervals a window may wait for --min-requests / --min-feedback before it "
        "counts as failed (missing data is a failed check)."
    ),
]
WaitOption = Annotated[
    bool,
    typer.Option(
        "--wait/--no-wait",
        help="Run the controller in this process until the rollout ends (else a running "
        "`metarec rollout controller` carries it out).",
    ),
]
ReportOption = Annotated[
    Path | None, typer.Option(help="With --wait: write the report here (.html or .png).")
]


@app.command()
def start(
    ctx: typer.Context,
    version: Annotated[str, typer.Argument(help="Staging version to roll out (3, v3, name:v3).")],
    steps: StepsOption = "10,25,50,100",
    interval: IntervalOption = "30s",
    max_error_rate: MaxErrorRateOption = 0.01,
    max_p99_ms: MaxP99Option = None,
    max_online_mae_delta: MaxMaeDeltaOption = None,
    max_online_hit_rate_drop: MaxHitRateDropOption = None,
    failure_threshold: FailureThresholdOption = 2,
    min_requests: MinRequestsOption = 20,
    min_feedback: MinFeedbackOption = 20,
    min_positive_feedback: MinPositiveFeedbackOption = 20,
    max_wait_intervals: MaxWaitIntervalsOption = 5,
    wait: WaitOption = False,
    report: ReportOption = None,
) -> None:
    """Start a canary rollout of a staging version."""
    from metarec.ops import rollout_spec, run_canary, start_canary

    settings: Settings = ctx.obj
    spec = rollout_spec(
        steps=steps,
        interval=interval,
        max_error_rate=max_error_rate,
        max_p99_ms=max_p99_ms,
        max_online_mae_delta=max_online_mae_delta,
        max_online_hit_rate_drop=max_online_hit_rate_drop,
        failure_threshold=failure_threshold,
        min_requests=min_requests,
        min_feedback=min_feedback,
        min_positive_feedback=min_positive_feedback,
        max_wait_intervals=max_wait_intervals,
    )
    ref = version_ref(settings, version, None)
    state = start_canary(settings, ref=ref, spec=spec, actor=default_actor())
    console.print(f"started rollout {state.id} of {ref.tag}: steps {list(spec.steps)}")
    for note in state.spec.notes:  # e.g. the online MAE is off for versions of implicit events
        console.print(f"  note: {note}", highlight=False)
    if not wait:
        console.print("the rollout controller carries it out; see `metarec rollout status`.")
        return
    actor = f"rollout-controller ({default_actor()})"
    final = run_canary(settings, rollout_id=state.id, actor=actor)
    _print_state(final)
    if report is not None:
        _write_report(settings, final, report)
    if final.phase.value != "Succeeded":
        raise typer.Exit(code=4)


DEPLOY_HELP = (
    "Set a registry version on the cluster's serving Deployment: the retrain pipeline's deploy "
    "step, through the Kubernetes API.\n\n"
    "rollout.deploy names the Deployment (kind kubernetes, namespace, deployment, container, "
    "port; env METAREC_ROLLOUT__DEPLOY__*). Its serving container then runs `metarec serve "
    "--version N --port P` (other args kept); the pod template is annotated metarec.io/version."
    "\n\nEngine embedded: the canary Deployment (then start the canary with `metarec rollout "
    "start`). Engine flagger: first the Flagger Canary's webhooks get metadata.version "
    "<model>:vN, then Flagger's target Deployment, whose change starts Flagger's analysis."
    "\n\nNeeds get/patch on that Deployment (and Canary): the chart's Role <fullname>-deployer."
)


@app.command(help=DEPLOY_HELP)
def deploy(
    ctx: typer.Context,
    version: Annotated[str, typer.Argument(help="Registry version to serve: 3, v3 or <model>:v3.")],
    wait_ready: Annotated[
        bool | None,
        typer.Option(
            "--wait-ready/--no-wait-ready",
            help="Wait until the Deployment's new pods are available (default: with engine "
            "embedded; Flagger scales its target itself).",
        ),
    ] = None,
) -> None:
    """Set a registry version on the cluster's serving Deployment (help: DEPLOY_HELP)."""
    from metarec.ops.deploy import deploy_version

    settings: Settings = ctx.obj
    ref = version_ref(settings, version, None)
    done = deploy_version(settings, ref=ref, wait_ready=wait_ready)
    what = "set" if done.patched else "already set"
    console.print(f"{ref.tag} {what} on Deployment {done.deployment}: {' '.join(done.args)}")
    if done.canary is not None:
        what = "set" if done.canary_patched else "already set"
        console.print(f"metadata.version {ref.tag} {what} on the webhooks of Canary {done.canary}")


def _print_events(events: list[Any]) -> None:
    """One line per event: time, action (as wide as the longest kind), weights, message."""
    from metarec.rollout.types import EventKind

    width = max(len(kind.value) for kind in EventKind)
    for event in events:
        console.print(
            f"  {event.at:%H:%M:%S} {event.action:<{width}} "
            f"{event.production_weight:>3}/{event.canary_weight:<3} {event.message}",
            highlight=False,
        )


def _write_report(settings: Settings, state: Any, output: Path) -> None:
    from metarec.rollout.report import write_report

    registry, store = _open(settings)
    try:
        path = write_report(state, store.events(state.id), output)
    finally:
        registry.close()
    console.print(f"report: {path}")


@app.command()
def status(
    ctx: typer.Context,
    rollout_id: Annotated[str | None, typer.Option("--id", help="A rollout id.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the state as JSON.")] = False,
    report: Annotated[Path | None, typer.Option(help="Write the report (.html or .png).")] = None,
) -> None:
    """Show the latest rollout of the model (or the one with --id) and its events."""
    settings: Settings = ctx.obj
    registry, store = _open(settings)
    try:
        state = store.get(rollout_id) if rollout_id else store.latest(settings.registry.model_name)
        if state is None:
            raise RolloutNotFoundError(
                f"No rollout of {settings.registry.model_name} yet.",
                fix="start one with `metarec rollout start VERSION`.",
            )
        events = store.events(state.id)
        if as_json:
            payload = state.model_dump(mode="json")
            payload["events"] = [event.model_dump(mode="json") for event in events]
            typer.echo(json.dumps(payload, indent=2))
        else:
            _print_state(state)
            _print_events(events)
        if report is not None:
            _write_report(settings, state, report)
    finally:
        registry.close()


@app.command()
def abort(ctx: typer.Context) -> None:
    """Abort the active rollout: the controller sets the canary weight to 0."""
    settings: Settings = ctx.obj
    registry, store = _open(settings)
    try:
        state = store.request_abort(settings.registry.model_name)
        console.print(f"abort requested for rollout {state.id} ({state.model}:v{state.version})")
    finally:
        registry.close()


def _health_server(
    port: int, ready: threading.Event, metrics: CollectorRegistry | None = None
) -> ThreadingHTTPServer:
    """Serve /healthz, /readyz and, given a prometheus_client registry, /metrics on ``port``."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_args: Any) -> None:
            return

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics" and metrics is not None:
                self._answer(200, CONTENT_TYPE_LATEST, generate_latest(metrics))
                return
            ok = path == "/healthz" or (path == "/readyz" and ready.is_set())
            body = b'{"status":"ok"}' if ok else b'{"status":"unavailable"}'
            self._answer(200 if ok else 503, "application/json", body)

        def _answer(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("content-type", content_type)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("0.0.0.0", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@app.command()
def controller(
    ctx: typer.Context,
    health_port: Annotated[
        int | None,
        typer.Option(
            help="Serve GET /healthz, /readyz and /metrics (the registry's and the rollouts' "
            "series) on this port."
        ),
    ] = None,
) -> None:
    """Run the rollout controller until SIGTERM/SIGINT (what the Helm chart runs)."""
    from metarec.ops import run_controller
    from metarec.ops.control_metrics import control_metrics

    settings: Settings = ctx.obj
    stop = threading.Event()
    ready = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())

    def on_ready() -> None:
        ready.set()
        console.print(
            f"rollout controller running (router {settings.rollout.router.kind}, "
            f"every {settings.rollout.poll_s:g}s)"
        )

    with ExitStack() as scope:
        if health_port:
            metrics = scope.enter_context(control_metrics(settings))
            health = _health_server(health_port, ready, metrics)
            scope.callback(health.shutdown)
        actor = f"rollout-controller ({default_actor()})"
        run_controller(settings, stop=stop, actor=actor, on_ready=on_ready)


def _router_config(
    settings: Settings, *, port: int | None, admin_port: int | None, admin_token: str | None
) -> LocalRouterConfig:
    """The local router's config: ``rollout.router`` (when local), then the options over it.

    The admin token comes from ``--admin-token``, else ``rollout.router.admin_token`` (of kind
    ``local`` or ``http``: ``METAREC_ROLLOUT__ROUTER__ADMIN_TOKEN``), else None (generated).
    """
    from pydantic import SecretStr, ValidationError

    configured = settings.rollout.router
    listen = configured if isinstance(configured, LocalRouterConfig) else LocalRouterConfig()
    update: dict[str, Any] = {}
    if port is not None:
        update["listen_port"] = port
    if admin_port is not None:
        update["admin_port"] = admin_port
    if admin_token:
        update["admin_token"] = SecretStr(admin_token)
    elif isinstance(configured, HTTPRouterConfig) and configured.admin_token is not None:
        update["admin_token"] = configured.admin_token
    try:
        return LocalRouterConfig.model_validate({**listen.model_dump(), **update})
    except ValidationError as exc:
        raise ConfigError(
            f"Invalid router options: {exc}", fix="pass ports 0..65535 that differ."
        ) from exc


@app.command()
def router(
    ctx: typer.Context,
    port: Annotated[
        int | None,
        typer.Option(help="Traffic port (default rollout.router.listen_port of router local)."),
    ] = None,
    admin_port: Annotated[
        int | None,
        typer.Option(help="Admin API port (default rollout.router.admin_port, else port + 1)."),
    ] = None,
    admin_token: Annotated[
        str | None,
        typer.Option(
            help="Admin API bearer token (default METAREC_ROLLOUT__ROUTER__ADMIN_TOKEN, else a "
            "random one, printed).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Run the local weighted proxy alone (drive it with router `http` from a controller).

    It listens where ``rollout.router`` says when that is a ``local`` router (else on the local
    router's defaults) and proxies to ``rollout.production_url`` and ``rollout.canary_url``.
    Its admin API (weights, metrics) listens on its own port and needs the admin token: give
    the controller both (``rollout.router.url``, ``rollout.router.admin_token``).
    """
    from metarec.rollout.routers.local import LocalWeightedRouter

    settings: Settings = ctx.obj
    config = settings.rollout
    listen = _router_config(settings, port=port, admin_port=admin_port, admin_token=admin_token)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    proxy = LocalWeightedRouter.from_config(
        listen, production_url=config.production_url, canary_url=config.canary_url
    ).start()
    console.print(f"weighted router at {proxy.url} → {config.production_url} | {config.canary_url}")
    console.print(f"admin API at {proxy.admin_url} (rollout.router.url of router http)")
    if listen.admin_token is None:
        console.print(
            f"admin token (generated): {proxy.admin_token}; pass it to the controller as "
            "METAREC_ROLLOUT__ROUTER__ADMIN_TOKEN",
            highlight=False,
            soft_wrap=True,
        )
    try:
        while not stop.wait(1.0):
            pass
    finally:
        proxy.stop()
