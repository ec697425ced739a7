"""Grafana dashboard JSON (schema 39) from a compact description: used by scripts/dashboards.py.

A dashboard is a list of rows of :class:`Panel`; :func:`dashboard` lays the panels out on
Grafana's 24-column grid and adds the ``datasource``, ``namespace`` and ``model_version``
template variables every MetaRec dashboard filters by.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
PANEL_HEIGHT = 8
Steps = tuple[tuple[float | None, str], ...]
Rows = list[tuple[str, list["Panel"]]]


@dataclass(frozen=True)
class Panel:
    """One panel: queries as (PromQL, legend), a unit, optional thresholds and value texts."""

    title: str
    queries: tuple[tuple[str, str], ...]
    unit: str
    description: str = ""
    kind: str = "timeseries"
    steps: Steps = ()
    mappings: dict[str, str] = field(default_factory=dict)
    width: int = 12


def render_panel(panel: Panel, pid: int, pos: dict[str, int]) -> dict[str, Any]:
    """The Grafana JSON of one panel."""
    steps = panel.steps or ((None, "green"),)
    defaults: dict[str, Any] = {
        "unit": panel.unit,
        "thresholds": {"mode": "absolute", "steps": [{"color": c, "value": v} for v, c in steps]},
    }
    if panel.mappings:
        texts = {value: {"text": text} for value, text in panel.mappings.items()}
        defaults["mappings"] = [{"type": "value", "options": texts}]
    if panel.kind == "timeseries":
        defaults["custom"] = {"thresholdsStyle": {"mode": "line" if panel.steps else "off"}}
        options: dict[str, Any] = {"legend": {"displayMode": "list", "placement": "bottom"}}
    else:
        options = {"reduceOptions": {"calcs": ["lastNotNull"]}}
    return {
        "id": pid,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": DATASOURCE,
        "gridPos": pos,
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": options,
        "targets": [
            {"datasource": DATASOURCE, "expr": expr, "legendFormat": legend, "refId": chr(65 + i)}
            for i, (expr, legend) in enumerate(panel.queries)
        ],
    }


def layout(rows: Rows) -> list[dict[str, Any]]:
    """Rows and panels on the 24-column grid, left to right, top to bottom."""
    out: list[dict[str, Any]] = []
    y = 0
    for title, panels in rows:
        pos = {"h": 1, "w": 24, "x": 0, "y": y}
        out.append(
            {"id": len(out) + 1, "type": "row", "title": title, "collapsed": False,
             "gridPos": pos, "panels": []}
        )  # fmt: skip
        y, x = y + 1, 0
        for panel in panels:
            if x + panel.width > 24:
                y, x = y + PANEL_HEIGHT, 0
            pos = {"h": PANEL_HEIGHT, "w": panel.width, "x": x, "y": y}
            out.append(render_panel(panel, len(out) + 1, pos))
            x += panel.width
        y += PANEL_HEIGHT
    return out


def variables() -> list[dict[str, Any]]:
    """The ``datasource``, ``namespace`` and ``model_version`` template variables."""

    def query(name: str, expr: str, **extra: Any) -> dict[str, Any]:
        return {
            "name": name,
            "label": name,
            "type": "query",
            "datasource": DATASOURCE,
            "query": {"query": expr, "refId": name},
            "definition": expr,
            "refresh": 2,
            "sort": 1,
            **extra,
        }

    versions = 'label_values(metarec_requests_total{namespace="$namespace"}, model_version)'
    return [
        {"name": "datasource", "label": "Prometheus", "type": "datasource", "query": "prometheus"},
        query("namespace", "label_values(metarec_requests_total, namespace)"),
        query("model_version", versions, multi=True, includeAll=True, allValue=".*"),
    ]


def dashboard(uid: str, title: str, description: str, rows: Rows) -> dict[str, Any]:
    """A whole dashboard."""
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["metarec"],
        "editable": True,
        "schemaVersion": 39,
        "time": {"from": "now-6h", "to": "now"},
        "refresh": "1m",
        "templating": {"list": variables()},
        "annotations": {"list": []},
        "links": [
            {"title": "MetaRec", "type": "dashboards", "tags": ["metarec"], "asDropdown": True}
        ],
        "panels": layout(rows),
    }
