"""Prometheus Operator monitors: the serving pods' /metrics are scraped where the Operator runs.

The rendered ServiceMonitor / PodMonitor validate against schemas written from the upstream
CRDs (tests/helm/schemas/prometheus-operator/SOURCE.md), select exactly the production and
canary serving objects of this release, scrape the port that serves BentoML's /metrics, keep
the services' own `endpoint` label that the canary analysis queries, and carry the labels the
Prometheus resource selects monitors by.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from metarec import metrics_contract as contract

SCHEMAS = Path(__file__).parent / "schemas" / "prometheus-operator"
MONITORING_API = "monitoring.coreos.com/v1"
ON = ("monitoring.prometheusOperator.enabled=true",)
# Target labels the Operator sets on every ServiceMonitor/PodMonitor target (pkg/prometheus/
# promcfg.go, v0.93.0); a scraped label of the same name is renamed exported_<name> unless
# honorLabels is set.
OPERATOR_TARGET_LABELS = {"namespace", "service", "pod", "container", "endpoint", "job"}
SERVING_COMPONENTS = {"serving-production", "serving-canary"}


def schema(kind: str) -> dict[str, Any]:
    return json.loads((SCHEMAS / f"{kind.lower()}.schema.json").read_text())


def monitors(manifests) -> list[dict[str, Any]]:
    """The serving monitors (the controller's: tests/helm/test_controller_monitor.py)."""
    return [
        d
        for d in manifests.docs
        if d["apiVersion"] == MONITORING_API
        and d["kind"] in ("ServiceMonitor", "PodMonitor")
        and d["metadata"]["labels"]["app.kubernetes.io/component"] == "serving"
    ]


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Kubernetes label-selector semantics (matchLabels and matchExpressions)."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expr in selector.get("matchExpressions", []):
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        ok = {
            "In": key in labels and labels[key] in values,
            "NotIn": labels.get(key) not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[op]
        if not ok:
            return False
    return True


def pod_labels(workload: dict[str, Any]) -> dict[str, str]:
    spec = workload["spec"]
    if workload["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    return spec["template"].get("metadata", {}).get("labels", {})


def test_gpu_production_renders_a_service_monitor_that_validates(gpu_embedded, chart):
    (monitor,) = monitors(gpu_embedded)
    assert monitor["kind"] == "ServiceMonitor"
    jsonschema.validate(monitor, schema("ServiceMonitor"))
    # kube-prometheus-stack's Prometheus selects monitors labelled with its release name.
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["metadata"]["name"] == chart.name("serving")


def test_off_unless_the_operator_is_enabled_in_values(default, chart):
    assert not monitors(default)
    assert not monitors(chart.render(chart.gpu_values, sets=["monitoring.serving.enabled=false"]))
    assert not monitors(
        chart.render(chart.gpu_values, sets=["monitoring.prometheusOperator.enabled=false"])
    )
    assert len(monitors(chart.render(sets=ON))) == 1


@pytest.mark.parametrize("kind", ["ServiceMonitor", "PodMonitor"])
def test_both_kinds_validate_against_the_upstream_crd_schema(chart, kind):
    for values, embedded in (((), ()), ((chart.gpu_values,), chart.gpu_embedded)):
        sets = [*embedded, *ON, f"monitoring.serving.kind={kind}"]
        (monitor,) = monitors(chart.render(*values, sets=sets))
        assert monitor["kind"] == kind
        jsonschema.validate(monitor, schema(kind))


def test_the_service_monitor_scrapes_exactly_the_serving_services_metrics_port(gpu_embedded, chart):
    gpu = gpu_embedded
    (monitor,) = monitors(gpu)
    spec = monitor["spec"]
    assert spec["namespaceSelector"] == {"matchNames": [chart.namespace]}
    services = gpu.of_kind("Service")
    selected = [s for s in services if selects(spec["selector"], s["metadata"]["labels"])]
    assert {s["metadata"]["name"] for s in selected} == {
        "mr-metarec-serving-production",
        "mr-metarec-serving-canary",
    }
    (endpoint,) = spec["endpoints"]
    assert endpoint["path"] == "/metrics"
    for service in selected:
        (port,) = [p for p in service["spec"]["ports"] if p["name"] == endpoint["port"]]
        assert port["targetPort"] == "http"
    for name in ("production", "canary"):
        pod = gpu.get("Deployment", f"mr-metarec-serving-{name}")["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        # The named port is where `metarec serve` listens (BentoML serves /metrics there).
        assert ports["http"] == int(container["args"][container["args"].index("--port") + 1])


def test_the_pod_monitor_scrapes_the_serving_pods_and_those_flagger_copies(chart):
    sets = [*chart.gpu_embedded, "monitoring.serving.kind=PodMonitor"]
    manifests = chart.render(chart.gpu_values, sets=sets)
    (monitor,) = monitors(manifests)
    spec = monitor["spec"]
    (endpoint,) = spec["podMetricsEndpoints"]
    selected = []
    for name, pod in manifests.pod_specs():
        doc_kind, doc_name = name.split("/", 1)
        if selects(spec["selector"], pod_labels(manifests.get(doc_kind, doc_name))):
            selected.append(doc_name)
            assert endpoint["port"] in {p["name"] for p in pod["containers"][0]["ports"]}
    assert set(selected) == {"mr-metarec-serving-production", "mr-metarec-serving-canary"}
    # Flagger's primary Deployment copies the pod labels but rewrites the selector label
    # (app.kubernetes.io/name → <name>-primary): its pods are still scraped.
    template = manifests.get("Deployment", "mr-metarec-serving-production")["spec"]["template"]
    primary = {**template["metadata"]["labels"], "app.kubernetes.io/name": "metarec-primary"}
    assert selects(spec["selector"], primary)
    assert spec["podTargetLabels"] == ["metarec.io/track"]


def test_the_monitor_keeps_the_endpoint_label_the_canary_analysis_queries(chart):
    """The services label requests with `endpoint` (/recommend…); the Operator sets its own
    `endpoint` target label (the port name). Without honorLabels the series' label would be
    renamed exported_endpoint and every endpoint-filtered canary query would find nothing."""
    collides = {contract.ENDPOINT, contract.MODEL_VERSION, contract.STATUS} & (
        OPERATOR_TARGET_LABELS
    )
    assert collides == {"endpoint"}
    for kind, key in (("ServiceMonitor", "endpoints"), ("PodMonitor", "podMetricsEndpoints")):
        (monitor,) = monitors(chart.render(sets=[*ON, f"monitoring.serving.kind={kind}"]))
        for endpoint in monitor["spec"][key]:
            assert endpoint["honorLabels"] is True, kind


def test_labels_interval_and_timeout_come_from_values(chart):
    (monitor,) = monitors(
        chart.render(
            sets=[
                *ON,
                "monitoring.labels.release=prom",
                "monitoring.labels.team=ml",
                "monitoring.serving.interval=30s",
                "monitoring.serving.scrapeTimeout=20s",
            ]
        )
    )
    labels = monitor["metadata"]["labels"]
    assert labels["release"] == "prom" and labels["team"] == "ml"
    assert labels["app.kubernetes.io/instance"] == "mr"
    (endpoint,) = monitor["spec"]["endpoints"]
    assert (endpoint["interval"], endpoint["scrapeTimeout"]) == ("30s", "20s")


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("monitoring.serving.kind=Probe", "monitoring/serving/kind"),
        ("monitoring.serving.interval=15 seconds", "monitoring/serving/interval"),
        ("monitoring.prometheusOperator.enable=true", "enable"),
    ],
)
def test_values_schema_rejects_bad_monitoring_values(chart, setting, message):
    with pytest.raises(chart.RenderError, match=message):
        chart.render(sets=[*ON, setting])


def test_the_schemas_reject_what_the_crds_reject(gpu_embedded):
    (monitor,) = monitors(gpu_embedded)
    validator = schema("ServiceMonitor")
    for mutate, expected in (
        (lambda m: m["spec"]["endpoints"][0].update(intervall="15s"), "intervall"),
        (lambda m: m["spec"]["endpoints"][0].update(interval="15 seconds"), "does not match"),
        (lambda m: m["spec"]["endpoints"][0].update(scheme="tcp"), "is not one of"),
        (lambda m: m["spec"]["endpoints"][0].update(honorLabels="yes"), "is not of type"),
        (lambda m: m["spec"]["selector"]["matchExpressions"][0].update(operator="in"), "not one"),
        (lambda m: m["spec"]["selector"]["matchExpressions"][0].update(values=[]), "non-empty"),
        (lambda m: m["spec"].pop("endpoints"), "'endpoints' is a required property"),
    ):
        bad = copy.deepcopy(monitor)
        mutate(bad)
        with pytest.raises(jsonschema.ValidationError, match=expected):
            jsonschema.validate(bad, validator)
