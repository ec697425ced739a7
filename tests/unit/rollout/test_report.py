"""The rollout report: PNG timeline and HTML page from a real store's events."""

from __future__ import annotations

from pathlib import Path

from metarec.rollout.report import METRIC_PANELS, VERSION_PANELS, render_png, write_report
from metarec.rollout.routers import Weights


def test_report_png_and_html(registry, tmp_path: Path):
    from test_controller import make

    controller, store, router, metrics, clock, state = make(registry)
    controller.reconcile(state.id)
    metrics.errors = 50
    clock.tick()
    controller.reconcile(state.id)  # a failed window (retry)
    metrics.errors = 0
    for _ in range(2):
        clock.tick()
        final = controller.reconcile(state.id)
    assert router.current == Weights(production=0, canary=100)
    events = store.events(state.id)
    assert [e.at for e in events] == sorted(e.at for e in events)
    png = write_report(final, events, tmp_path / "r.png")
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    page = write_report(final, events, tmp_path / "out" / "r.html").read_text()
    assert "Rollout metarec:v2: Succeeded" in page
    assert "data:image/png;base64," in page
    assert "error_rate=0.5 (FAIL, limit 0.01)" in page
    assert "&quot;status&quot;: &quot;passed&quot;" in page  # the verdict, HTML-escaped


def test_report_shows_the_online_hit_rate_check_and_each_versions_rate(registry, tmp_path: Path):
    from test_controller import SPEC, HitMetrics, make

    spec = SPEC.model_copy(update={"max_online_hit_rate_drop": 0.05})
    controller, store, _router, _metrics, clock, state = make(
        registry, spec=spec, metrics=HitMetrics()
    )
    controller.reconcile(state.id)
    for _ in range(2):
        clock.tick()
        final = controller.reconcile(state.id)
    events = store.events(state.id)
    assert ("online_hit_rate", "online hit rate\ncanary − production") in METRIC_PANELS
    assert VERSION_PANELS == (("online_hit_rate", "online hit rate\nper version"),)
    assert render_png(final, events).startswith(b"\x89PNG")
    page = write_report(final, events, tmp_path / "r.html").read_text()
    assert "online_hit_rate=-0.02 (ok, limit -0.05)" in page
