"""The rollout report: a PNG timeline (weights, each metric against its threshold) and HTML."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from metarec.rollout.store import RolloutEvent
from metarec.rollout.types import DATA_CHECKS, RolloutState

if TYPE_CHECKING:
    from matplotlib.axes import Axes

Seconds = Callable[[RolloutEvent], float]  # an event's time since the first event

# One panel per check: its value in each analysed window against the threshold.
METRIC_PANELS = (
    ("error_rate", "canary error rate"),
    ("latency_p99_ms", "canary latency p99 (ms)"),
    ("online_mae_delta", "online MAE\ncanary − production"),
    ("online_hit_rate", "online hit rate\ncanary − production"),
)
# One panel per online-quality series: each version's windowed value (event metrics).
VERSION_PANELS = (("online_hit_rate", "online hit rate\nper version"),)


def render_png(state: RolloutState, events: list[RolloutEvent]) -> bytes:
    """A PNG: weights over time, one panel per check, then each version's online hit rate.

    Check panels show the value of each analysed window (green passed, red failed) and the
    threshold (dashed); the per-version panel shows production's and the canary's windowed
    online hit rate (the check compares their difference).

    Args:
        state: The rollout.
        events: Its events (:meth:`RolloutStore.events`).

    Returns:
        The PNG bytes.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    start = events[0].at if events else None

    def seconds(event: RolloutEvent) -> float:
        return (event.at - start).total_seconds() if start else 0.0

    panels = 1 + len(METRIC_PANELS) + len(VERSION_PANELS)
    figure = Figure(figsize=(9, 2.1 * panels), layout="constrained")
    axes = figure.subplots(panels, 1, sharex=True)
    _weights_panel(axes[0], state, events, seconds)
    check_axes = axes[1 : 1 + len(METRIC_PANELS)]
    for axis, (name, label) in zip(check_axes, METRIC_PANELS, strict=True):
        _check_panel(axis, name, label, events, seconds)
    version_axes = axes[1 + len(METRIC_PANELS) :]
    for axis, (key, label) in zip(version_axes, VERSION_PANELS, strict=True):
        _version_panel(axis, key, label, events, seconds)
    axes[-1].set_xlabel("seconds since start")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    return buffer.getvalue()


def _weights_panel(
    axis: Axes, state: RolloutState, events: list[RolloutEvent], seconds: Seconds
) -> None:
    """Production and canary traffic weights as steps over time."""
    times = [seconds(e) for e in events]
    axis.step(times, [e.canary_weight for e in events], where="post", label="canary")
    axis.step(times, [e.production_weight for e in events], where="post", label="production")
    axis.set_ylabel("traffic (%)")
    axis.set_ylim(-5, 105)
    axis.legend(loc="center right")
    axis.set_title(f"Rollout {state.model}:v{state.version} — {state.phase.value} ({state.id[:8]})")


def _check_panel(
    axis: Axes, name: str, label: str, events: list[RolloutEvent], seconds: Seconds
) -> None:
    """One check's value per analysed window (green passed, red failed), threshold dashed."""
    xs, ys, colours, threshold = [], [], [], None
    for event in events:
        for check in event.checks or []:
            if check["name"] == name and check["value"] is not None:
                xs.append(seconds(event))
                ys.append(check["value"])
                colours.append("tab:green" if check["passed"] else "tab:red")
                threshold = check["threshold"]
    if xs:
        axis.plot(xs, ys, color="0.6", linewidth=1)
        axis.scatter(xs, ys, c=colours, zorder=3)
    if threshold is not None:
        axis.axhline(threshold, color="tab:red", linestyle="--", label="threshold")
        axis.legend(loc="upper left")
    elif not xs:
        axis.text(0.5, 0.5, "not checked", ha="center", va="center", transform=axis.transAxes)
    axis.set_ylabel(label)


def _version_panel(
    axis: Axes, key: str, label: str, events: list[RolloutEvent], seconds: Seconds
) -> None:
    """Each version's windowed ``key`` (from the analysed events' metrics) over time."""
    plotted = False
    for side, colour in (("production", "tab:orange"), ("canary", "tab:blue")):
        points = [
            (seconds(event), value)
            for event in events
            if event.checks is not None
            and (value := ((event.metrics or {}).get(side) or {}).get(key)) is not None
        ]
        if points:
            xs, ys = zip(*points, strict=True)
            axis.plot(xs, ys, marker="o", color=colour, label=side)
            plotted = True
    if plotted:
        axis.legend(loc="upper left")
    else:
        axis.text(0.5, 0.5, "no data", ha="center", va="center", transform=axis.transAxes)
    axis.set_ylabel(label)


def render_html(state: RolloutState, events: list[RolloutEvent]) -> str:
    """A standalone HTML page: summary, verdict, the PNG timeline and every analysed window."""
    png = base64.b64encode(render_png(state, events)).decode()
    rows = []
    for event in events:
        checks = " · ".join(_check_text(c) for c in event.checks or [])
        rows.append(
            "<tr>"
            f"<td>{event.at.strftime('%H:%M:%S')}</td><td>{html.escape(event.phase.value)}</td>"
            f"<td>{html.escape(event.action)}</td><td>{event.production_weight}/"
            f"{event.canary_weight}</td><td>{html.escape(checks)}</td>"
            f"<td>{html.escape(event.message)}</td></tr>"
        )
    verdict = html.escape(state.verdict.model_dump_json(indent=2)) if state.verdict else "none yet"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Rollout {state.model}:v{state.version} — {state.phase.value}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;font-size:90%}}pre{{background:#f6f6f6;padding:1em}}
</style></head><body>
<h1>Rollout {state.model}:v{state.version}: {state.phase.value}</h1>
<p>Rollout <code>{state.id}</code>, production before: v{state.production_version},
steps {", ".join(f"{s} %" for s in state.spec.steps)}, window {state.spec.interval_s:g} s,
failure threshold {state.spec.failure_threshold}. {html.escape(state.message)}</p>
<img alt="weights and metrics timeline" src="data:image/png;base64,{png}">
<h2>Events</h2><table><tr><th>time</th><th>phase</th><th>action</th>
<th>production/canary %</th><th>checks</th><th>message</th></tr>
{"".join(rows)}</table>
<h2>Verdict</h2><pre>{verdict}</pre></body></html>
"""


def _check_text(check: dict) -> str:
    value = "n/a" if check["value"] is None else f"{check['value']:.4g}"
    verdict = "ok" if check["passed"] else "FAIL"
    limit = "needs" if check["name"] in DATA_CHECKS else "limit"
    return f"{check['name']}={value} ({verdict}, {limit} {check['threshold']:.4g})"


def write_report(state: RolloutState, events: list[RolloutEvent], output: Path) -> Path:
    """Write ``output`` as PNG (``.png``) or HTML (anything else); returns the path."""
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    if output.suffix.lower() == ".png":
        output.write_bytes(render_png(state, events))
    else:
        output.write_text(render_html(state, events))
    return output
