"""The rolling online quality gauges are absent until feedback judges the version.

At 0 from the start, a status screen could not tell "no feedback yet" from "perfect".
"""

from __future__ import annotations

from metarec.serving.metrics import ServingMetrics
from metarec.serving.quality import RollingMAE
from prometheus_client import generate_latest

VERSION = "metarec:v7"


def _text(metrics: ServingMetrics) -> str:
    return generate_latest(metrics.registry).decode()


def test_no_online_mae_or_hit_rate_before_feedback_but_the_counters_exist():
    metrics = ServingMetrics(model_version=VERSION)
    text = _text(metrics)
    assert "metarec_online_mae{" not in text and "metarec_online_hit_rate{" not in text
    assert f'metarec_feedback_total{{model_version="{VERSION}"}} 0.0' in text
    assert f'metarec_feedback_positive_total{{model_version="{VERSION}"}} 0.0' in text
    # Feedback that scored nothing (no prediction to compare, no positive event) sets nothing.
    metrics.observe_feedback([], RollingMAE(window=10).add([]))
    metrics.observe_hits(0, 0, None)
    text = _text(metrics)
    assert "metarec_online_mae{" not in text and "metarec_online_hit_rate{" not in text


def test_the_gauges_appear_with_the_first_judged_feedback():
    metrics = ServingMetrics(model_version=VERSION)
    metrics.observe_feedback([0.5], RollingMAE(window=10).add([0.5]))
    metrics.observe_hits(2, 1, 0.5)
    text = _text(metrics)
    assert f'metarec_online_mae{{model_version="{VERSION}"}} 0.5' in text
    assert f'metarec_online_hit_rate{{model_version="{VERSION}"}} 0.5' in text


def test_rolling_mae_is_unknown_before_any_scored_event():
    mae = RollingMAE(window=2)
    assert mae.add([]) is None
    assert mae.add([1.0]) == 1.0
