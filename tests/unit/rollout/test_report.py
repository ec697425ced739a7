"""The rollout report: PNG timeline and HTML page from a real store's events."""

from __future__ import annotations

from pathlib import Path

from metarec.rollout.report import write_report
from metarec.rollout.router import Weights


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
