"""The Grafana dashboards the chart ships (helm/metarec/dashboards/, from scripts/dashboards.py).

Every panel's PromQL is parsed (promql-parser) and may name only series the code exports (the
metrics contract) or the documented external series (tests/helm/promql_series.py); every panel
has a title, a unit and a query. With `monitoring.grafanaDashboards.enabled` the chart renders
one ConfigMap per dashboard with the Grafana sidecar's label, a valid core ConfigMap holding the
file unchanged; with it off, nothing.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from tests.helm.promql_series import (
    EXTERNAL_SERIES,
    contract_series,
    distributions,
    resolve,
    series_in,
    unknown_series,
)

REPO = Path(__file__).resolve().parents[2]
DASHBOARDS = REPO / "helm" / "metarec" / "dashboards"
GENERATOR = REPO / "scripts" / "dashboards.py"
DOCS = REPO / "docs" / "kubernetes.md"
ON = ("monitoring.grafanaDashboards.enabled=true",)
FILES = sorted(DASHBOARDS.glob("*.json"))


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in board["panels"] if p["type"] != "row"]


def dashboard_maps(manifests) -> list[dict[str, Any]]:
    return [d for d in manifests.of_kind("ConfigMap") if "-dashboard-" in d["metadata"]["name"]]


def test_the_committed_dashboards_are_what_the_generator_writes():
    proc = subprocess.run(
        [sys.executable, str(GENERATOR), "--check"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert [p.name for p in FILES] == [
        "metarec-data.json",
        "metarec-quality.json",
        "metarec-rollout.json",
        "metarec-service.json",
    ]


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_every_panel_queries_only_exported_or_documented_external_series(path):
    board = load(path)
    assert panels(board)
    for panel in panels(board):
        title = panel["title"]
        assert title and panel["fieldConfig"]["defaults"]["unit"], f"{path.name}: {title}"
        assert panel["targets"], f"{path.name}: {title} has no query"
        for target in panel["targets"]:
            unknown = unknown_series(target["expr"])
            assert not unknown, f"{path.name}: {title!r} reads {unknown}, which nothing exports"
            assert target["datasource"]["uid"] == "${datasource}"
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":  # label_values(<series selector>, <label>)
            match = re.fullmatch(r"label_values\((.+?)(?:,\s*\w+)?\)", variable["definition"])
            assert match and not unknown_series(match[1]), variable["definition"]


def test_the_series_check_rejects_what_is_not_exported():
    assert unknown_series('rate(metarec_requests_totl{namespace="$namespace"}[5m])') == {
        "metarec_requests_totl"
    }
    # A counter has no buckets; only histograms and summaries resolve their samples.
    assert unknown_series("metarec_requests_total_bucket") == {"metarec_requests_total_bucket"}
    assert not unknown_series("metarec_request_latency_seconds_bucket")
    # Label names and functions are not series.
    assert series_in('sum by (feature_view) (time() - up{job="x"})') == {"up"}


def test_the_dashboards_cover_every_series_of_the_contract():
    """Nothing the service exports is left off the dashboards."""
    exprs = [t["expr"] for path in FILES for p in panels(load(path)) for t in p["targets"]]
    used = {name for expr in exprs for name in series_in(expr)}
    declared, histograms = contract_series(), distributions()
    shown = {resolve(n, declared, histograms) for n in used} - {None}
    # A summary's declared `_sum` shows the summary itself.
    shown |= {n.removesuffix("_sum") for n in shown} & histograms
    assert declared - shown == set()
    assert {n for n in used if n in EXTERNAL_SERIES} <= set(EXTERNAL_SERIES)


def test_the_online_hit_rate_is_never_drawn_against_the_user_level_offline_hit_rate():
    # Offline hit@10 is per user (any liked item in the top 10); the online rate is per liked
    # item reported. As a reference line it made every healthy version look 0.7 worse.
    online = ("metarec_online_hit_rate", "metarec_feedback_hits_total")
    for path in FILES:
        for panel in panels(load(path)):
            exprs = " ".join(t["expr"] for t in panel["targets"])
            if any(name in exprs for name in online):
                assert "metarec_offline_hit_rate" not in exprs, (path.name, panel["title"])


def test_external_series_are_documented_with_their_source():
    text = DOCS.read_text()
    for name in EXTERNAL_SERIES:
        assert f"`{name}`" in text, f"docs/kubernetes.md does not list the external {name}"


def test_panels_are_laid_out_on_the_grid_with_unique_ids():
    uids = set()
    for path in FILES:
        board = load(path)
        uids.add(board["uid"])
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids)), path.name
        for p in board["panels"]:
            pos = p["gridPos"]
            assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, (path.name, p["title"])
    assert len(uids) == len(FILES)


def test_the_chart_renders_one_sidecar_configmap_per_dashboard(chart):
    manifests = chart.render(sets=ON)
    maps = dashboard_maps(manifests)
    assert {m["metadata"]["name"] for m in maps} == {
        chart.name(f"dashboard-{p.stem.removeprefix('metarec-')}") for p in FILES
    }
    for cm in maps:
        labels = cm["metadata"]["labels"]
        assert labels["grafana_dashboard"] == "1"
        assert labels["app.kubernetes.io/instance"] == chart.release
        assert cm["metadata"]["annotations"] == {"grafana_folder": "MetaRec"}
        ((key, text),) = cm["data"].items()
        assert json.loads(text) == load(DASHBOARDS / key)
        for version in chart.kubernetes_versions:
            kubernetes_validate.validate(cm, version, strict=True)


def test_off_by_default_and_label_namespace_folder_from_values(chart, default):
    assert not dashboard_maps(default)
    maps = dashboard_maps(
        chart.render(
            sets=[
                *ON,
                "monitoring.grafanaDashboards.label=dashboards",
                "monitoring.grafanaDashboards.labelValue=metarec",
                "monitoring.grafanaDashboards.namespace=monitoring",
                "monitoring.grafanaDashboards.folder=",
                "monitoring.grafanaDashboards.labels.team=ml",
            ]
        )
    )
    assert len(maps) == len(FILES)
    for cm in maps:
        meta = cm["metadata"]
        assert (
            meta["labels"]["dashboards"] == "metarec" and "grafana_dashboard" not in meta["labels"]
        )
        assert meta["labels"]["team"] == "ml"
        assert meta["namespace"] == "monitoring"
        assert "annotations" not in meta


def test_a_numeric_label_value_is_rendered_as_a_string(chart):
    """`--set …labelValue=1` is an integer to Helm; a label value must be a string."""
    maps = dashboard_maps(chart.render(sets=[*ON, "monitoring.grafanaDashboards.labelValue=1"]))
    assert {cm["metadata"]["labels"]["grafana_dashboard"] for cm in maps} == {"1"}


def test_values_schema_rejects_a_bad_sidecar_label(chart):
    with pytest.raises(chart.RenderError, match="grafanaDashboards"):
        chart.render(sets=[*ON, "monitoring.grafanaDashboards.label=not a label"])
