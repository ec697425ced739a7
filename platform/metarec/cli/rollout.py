"""``metarec rollout …``: start, watch, abort and run canary rollouts."""

from __future__ import annotations

import getpass
import json
import os
import re
import signal
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Annotated, Any

import typer

from metarec.cli.console import console
from metarec.config import Settings
from metarec.errors import ConfigError, RolloutNotFoundError

app = typer.Typer(
    help="Canary rollouts: shift traffic in steps, analyse, promote or roll back.",
    no_args_is_help=True,
)

_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(ms|s|m|h)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(text: str) -> float:
    """``30s``, ``2m``, ``500ms``, ``1h`` or plain seconds → seconds.

    Raises:
        ConfigError: Not a duration.
    """
    match = _DURATION.match(text)
    if match is None or float(match[1]) <= 0:
        raise ConfigError(
            f"{text!r} is not a positive duration.", fix="write e.g. 30s, 2m, 500ms or 45."
        )
    return float(match[1]) * _UNITS[match[2]]


def parse_steps(text: str) -> tuple[int, ...]:
    """``10,25,50,100`` → (10, 25, 50, 100).

    Raises:
        ConfigError: Not a comma-separated list of integers.
    """
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError as exc:
        raise ConfigError(
            f"--steps {text!r} is not a list of percentages.", fix="write e.g. 10,25,50,100."
        ) from exc


def _actor() -> str:
    try:
        return os.environ.get("METAREC_ACTOR") or getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _open(settings: Settings) -> tuple[Any, Any]:
    from metarec.registry import Registry
    from metarec.rollout.store import RolloutStore

    registry = Registry.open(settings)
    return registry, RolloutStore(engine=registry.engine)


def _controller(settings: Settings, registry: Any, store: Any) -> tuple[Any, Any]:
    from metarec.rollout.controller import RolloutController
    from metarec.rollout.wiring import build_metrics, build_router

    router, release = build_router(settings)
    controller = RolloutController(
        registry=registry,
        store=store,
        router=router,
        metrics=build_metrics(settings, router=router),
        actor=f"rollout-controller ({_actor()})",
    )
    return controller, release


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


@app.command()
def start(
    ctx: typer.Context,
    version: Annotated[str, typer.Argument(help="Staging version to roll out (3, v3, name:v3).")],
    steps: Annotated[str, typer.Option(help="Canary weights in percent.")] = "10,25,50,100",
    interval: Annotated[str, typer.Option(help="Analysis window per step (30s, 2m).")] = "30s",
    max_error_rate: Annotated[float, typer.Option(help="Highest canary 5xx share.")] = 0.01,
    max_p99_ms: Annotated[
        float | None, typer.Option(help="Highest canary latency p99 in ms (unset: unchecked).")
    ] = None,
    max_online_mae_delta: Annotated[
        float | None,
        typer.Option(help="Highest canary − production online MAE (unset: unchecked)."),
    ] = None,
    max_online_hit_rate_drop: Annotated[
        float | None,
        typer.Option(
            help="Largest drop of the canary's online hit rate below production's, 0..1 "
            "(unset: unchecked)."
        ),
    ] = None,
    failure_threshold: Annotated[
        int, typer.Option(help="Failed windows in a row that roll back.")
    ] = 2,
    min_requests: Annotated[
        int, typer.Option(help="Canary requests a window needs for a verdict.")
    ] = 20,
    min_feedback: Annotated[
        int, typer.Option(help="Feedback events per service for the MAE verdict.")
    ] = 20,
    min_positive_feedback: Annotated[
        int, typer.Option(help="Positive feedback events per service for the hit-rate verdict.")
    ] = 20,
    max_wait_intervals: Annotated[
        int,
        typer.Option(
            help="Intervals a window may wait for --min-requests / --min-feedback before it "
            "counts as failed (missing data is a failed check)."
        ),
    ] = 5,
    wait: Annotated[
        bool,
        typer.Option(
            "--wait/--no-wait",
            help="Run the controller in this process until the rollout ends (else a running "
            "`metarec rollout controller` carries it out).",
        ),
    ] = False,
    report: Annotated[
        Path | None, typer.Option(help="With --wait: write the report here (.html or .png).")
    ] = None,
) -> None:
    """Start a canary rollout of a staging version."""
    from pydantic import ValidationError

    from metarec.registry import VersionRef
    from metarec.rollout.controller import start_rollout
    from metarec.rollout.types import RolloutSpec

    settings: Settings = ctx.obj
    try:
        spec = RolloutSpec(
            steps=parse_steps(steps),
            interval_s=parse_duration(interval),
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
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ConfigError(
            f"Invalid rollout option {first['loc'][0]}: {first['msg']}.",
            fix="see `metarec rollout start --help`.",
        ) from exc
    ref = VersionRef.parse(version, default_model=settings.registry.model_name)
    registry, store = _open(settings)
    try:
        state = start_rollout(registry=registry, store=store, ref=ref, spec=spec, actor=_actor())
        console.print(f"started rollout {state.id} of {ref.tag}: steps {list(spec.steps)}")
        if not wait:
            console.print("the rollout controller carries it out; see `metarec rollout status`.")
            return
        controller, release = _controller(settings, registry, store)
        try:
            final = controller.run_until_done(state.id, poll_s=settings.rollout.poll_s)
        finally:
            release()
        _print_state(final)
        if report is not None:
            _write_report(store, final, report)
        if final.phase.value != "Succeeded":
            raise typer.Exit(code=4)
    finally:
        registry.close()


def _write_report(store: Any, state: Any, output: Path) -> None:
    from metarec.rollout.report import write_report

    path = write_report(state, store.events(state.id), output)
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
            for event in events:
                console.print(
                    f"  {event.at:%H:%M:%S} {event.action:<10} "
                    f"{event.production_weight:>3}/{event.canary_weight:<3} {event.message}",
                    highlight=False,
                )
        if report is not None:
            _write_report(store, state, report)
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


def _health_server(port: int, ready: threading.Event) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_args: Any) -> None:
            return

        def do_GET(self) -> None:
            ok = self.path == "/healthz" or (self.path == "/readyz" and ready.is_set())
            body = b'{"status":"ok"}' if ok else b'{"status":"unavailable"}'
            self.send_response(200 if ok else 503)
            self.send_header("content-type", "application/json")
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
        int | None, typer.Option(help="Serve GET /healthz and /readyz on this port.")
    ] = None,
) -> None:
    """Run the rollout controller until SIGTERM/SIGINT (what the Helm chart runs)."""
    settings: Settings = ctx.obj
    stop = threading.Event()
    ready = threading.Event()
    health = _health_server(health_port, ready) if health_port else None
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    registry, store = _open(settings)
    try:
        rollout_controller, release = _controller(settings, registry, store)
        try:
            ready.set()
            console.print(
                f"rollout controller running (router {settings.rollout.router}, "
                f"every {settings.rollout.poll_s:g}s)"
            )
            rollout_controller.run(
                stop=stop, poll_s=settings.rollout.poll_s, model=settings.registry.model_name
            )
        finally:
            release()
    finally:
        registry.close()
        if health is not None:
            health.shutdown()


@app.command()
def router(
    ctx: typer.Context,
    port: Annotated[
        int | None, typer.Option(help="Listen port (default rollout.listen_port).")
    ] = None,
) -> None:
    """Run the local weighted proxy alone (drive it with router `http` from a controller)."""
    from metarec.rollout.routers.local import LocalWeightedRouter

    settings: Settings = ctx.obj
    config = settings.rollout
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    proxy = LocalWeightedRouter(
        production_url=config.production_url,
        canary_url=config.canary_url,
        host=config.listen_host,
        port=config.listen_port if port is None else port,
    ).start()
    console.print(f"weighted router at {proxy.url} → {config.production_url} | {config.canary_url}")
    try:
        while not stop.wait(1.0):
            pass
    finally:
        proxy.stop()
