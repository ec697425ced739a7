"""The rollout controller's /metrics is scraped where the Prometheus Operator runs (issue 22).

The chart renders a PodMonitor of the controller's health port wherever the controller runs and
the Operator's monitors are on: it validates against the PodMonitor schema written from the
upstream CRD, selects exactly the controller's pods, scrapes the port the controller serves
/metrics on, carries the labels Prometheus selects monitors by, and the controller's
NetworkPolicy lets the Prometheus namespace reach that port.
"""

from __future__ import annotations

from typing import Any

import jsonschema

from tests.helm.test_monitoring import MONITORING_API, ON, pod_labels, schema, selects

CONTROLLER = "mr-metarec-rollout-controller"


def controller_monitors(manifests) -> list[dict[str, Any]]:
    return [
        d
        for d in manifests.docs
        if d["apiVersion"] == MONITORING_API
        and d["metadata"]["labels"].get("app.kubernetes.io/component") == "rollout-controller"
    ]


def test_the_controller_pod_monitor_validates_and_scrapes_its_health_port(chart):
    manifests = chart.render(sets=[*ON, "monitoring.labels.release=kube-prometheus-stack"])
    (monitor,) = controller_monitors(manifests)
    assert monitor["kind"] == "PodMonitor" and monitor["metadata"]["name"] == CONTROLLER
    jsonschema.validate(monitor, schema("PodMonitor"))
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    spec = monitor["spec"]
    assert spec["namespaceSelector"] == {"matchNames": [chart.namespace]}
    selected = [
        name
        for name, _pod in manifests.pod_specs()
        if selects(spec["selector"], pod_labels(manifests.get(*name.split("/", 1))))
    ]
    assert selected == [f"Deployment/{CONTROLLER}"]
    (endpoint,) = spec["podMetricsEndpoints"]
    assert (endpoint["port"], endpoint["path"]) == ("health", "/metrics")
    pod = manifests.get("Deployment", CONTROLLER)["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    # The named port is where `metarec rollout controller --health-port` serves /metrics.
    args = container["args"]
    assert args[:2] == ["rollout", "controller"]
    assert ports["health"] == int(args[args.index("--health-port") + 1])


def test_prometheus_may_reach_the_controller_health_port(chart):
    manifests = chart.render(sets=ON)
    labels = pod_labels(manifests.get("Deployment", CONTROLLER))
    prometheus = {"kubernetes.io/metadata.name": "monitoring"}  # networkPolicy default
    allowed = [
        rule
        for policy in manifests.of_kind("NetworkPolicy")
        if "Ingress" in policy["spec"]["policyTypes"]
        and selects(policy["spec"]["podSelector"], labels)
        for rule in policy["spec"].get("ingress", [])
        if any(selects(peer.get("namespaceSelector", {}), prometheus) for peer in rule["from"])
    ]
    assert [p["port"] for rule in allowed for p in rule["ports"]] == ["health"]


def test_no_controller_monitor_without_the_operator_or_the_controller(chart, default):
    assert not controller_monitors(default)
    assert not controller_monitors(chart.render(sets=[*ON, "rollout.controller.enabled=false"]))
    # Flagger runs the canaries (the GPU values' engine): no embedded controller to scrape.
    assert not controller_monitors(chart.render(chart.gpu_values, sets=ON))
