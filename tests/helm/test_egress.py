"""Egress NetworkPolicies are on by default: each workload reaches what it needs, nothing else.

The rendered policies are evaluated as Kubernetes does (a pod's egress is the union of the rules
of every Egress policy that selects it; a pod selected by none is unrestricted) against probe
destinations: the cluster DNS, the data services as the chart's defaults find them, the API
server, another namespace's pod and an address on the internet.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

import kubernetes_validate
import pytest

NAMESPACE = "metarec"


@dataclass(frozen=True)
class Target:
    """A destination: a pod (namespace labels, pod labels) or a bare address, and a port."""

    port: int
    protocol: str = "TCP"
    ip: str = "10.99.0.10"
    namespace: dict[str, str] = field(default_factory=dict)
    pod: dict[str, str] | None = None


def _ns(name: str) -> dict[str, str]:
    return {"kubernetes.io/metadata.name": name}


TARGETS = {
    "dns": Target(53, "UDP", namespace=_ns("kube-system"), pod={"k8s-app": "kube-dns"}),
    "postgresql": Target(
        5432, namespace=_ns("databases"), pod={"app.kubernetes.io/name": "postgresql"}
    ),
    "redis": Target(6379, namespace=_ns("databases"), pod={"app.kubernetes.io/name": "redis"}),
    "object-storage": Target(
        9000, namespace=_ns("storage"), pod={"app.kubernetes.io/name": "minio"}
    ),
    "prometheus": Target(
        9090, namespace=_ns("monitoring"), pod={"app.kubernetes.io/name": "prometheus"}
    ),
    "release-pod": Target(
        3000,
        namespace=_ns(NAMESPACE),
        pod={"app.kubernetes.io/name": "metarec", "app.kubernetes.io/instance": "mr"},
    ),
    "api-server": Target(443, ip="10.0.0.1"),
    "other-namespace-pod": Target(8080, namespace=_ns("web"), pod={"app": "shop"}),
    "internet-https": Target(443, ip="93.184.216.34"),
    "internet-http": Target(80, ip="93.184.216.34"),
    "postgresql-wrong-port": Target(
        22, namespace=_ns("databases"), pod={"app.kubernetes.io/name": "postgresql"}
    ),
}
BASE = {"dns", "release-pod"}
DATA = {"postgresql", "redis", "object-storage"}
# What each workload (app.kubernetes.io/component) needs besides DNS and the release's pods.
NEEDS = {
    "api": {"postgresql", "object-storage"},
    "rollout-controller": {"postgresql", "prometheus", "api-server"},
    "serving-production": DATA,
    "serving-canary": DATA,
    "training": DATA,
    "retrain": DATA,
    "data-ingest": DATA,
    "data-materialize": DATA,
    "feast": DATA,
    "db-migrate": {"postgresql"},
}
API_SERVER_CIDRS = ("networkPolicy.egress.apiServer.cidrs[0]=10.0.0.1/32",)


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A Kubernetes label selector (matchLabels, matchExpressions) against labels."""
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        found = {
            "In": labels.get(key) in values,
            "NotIn": labels.get(key) not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[op]
        if not found:
            return False
    return True


def _peer_matches(peer: dict[str, Any], target: Target) -> bool:
    if "ipBlock" in peer:
        block = peer["ipBlock"]
        ip = ipaddress.ip_address(target.ip)
        excluded = any(ip in ipaddress.ip_network(c) for c in block.get("except", []))
        return ip in ipaddress.ip_network(block["cidr"]) and not excluded
    if target.pod is None:  # a bare address is no pod: selectors never match it
        return False
    if "namespaceSelector" in peer:
        namespace_ok = selects(peer["namespaceSelector"], target.namespace)
    else:
        namespace_ok = target.namespace == _ns(NAMESPACE)
    return namespace_ok and selects(peer.get("podSelector") or {}, target.pod)


def _rule_allows(rule: dict[str, Any], target: Target) -> bool:
    ports = rule.get("ports")
    if ports and not any(
        p.get("port") == target.port and p.get("protocol", "TCP") == target.protocol for p in ports
    ):
        return False
    peers = rule.get("to")
    return not peers or any(_peer_matches(peer, target) for peer in peers)


def reachable(manifests, pod_labels: dict[str, str]) -> set[str]:
    """Names of the probe targets a pod with these labels may reach."""
    policies = [
        p["spec"]
        for p in manifests.of_kind("NetworkPolicy")
        if "Egress" in p["spec"].get("policyTypes", [])
        and selects(p["spec"]["podSelector"], pod_labels)
    ]
    if not policies:
        return set(TARGETS)
    rules = [rule for spec in policies for rule in spec.get("egress", [])]
    return {name for name, t in TARGETS.items() if any(_rule_allows(r, t) for r in rules)}


def workloads(manifests) -> dict[str, dict[str, str]]:
    """component → pod labels of every rendered workload."""
    out = {}
    for doc in manifests.docs:
        spec = doc.get("spec", {})
        if doc["kind"] in ("Deployment", "Job"):
            labels = spec["template"]["metadata"]["labels"]
        elif doc["kind"] == "CronJob":
            labels = spec["jobTemplate"]["spec"]["template"]["metadata"]["labels"]
        else:
            continue
        out[labels["app.kubernetes.io/component"]] = labels
    return out


def test_egress_is_restricted_by_default(default, chart):
    deny = default.get("NetworkPolicy", chart.name("default-deny"))["spec"]
    assert set(deny["policyTypes"]) == {"Ingress", "Egress"}
    assert set(workloads(default)) >= {"api", "rollout-controller", "serving-production"}


@pytest.mark.parametrize(
    "sets", [(), API_SERVER_CIDRS, ("serving.canary.enabled=true", *API_SERVER_CIDRS)]
)
def test_each_workload_reaches_what_it_needs_and_nothing_else(chart, sets):
    manifests = chart.render(sets=sets)
    pods = workloads(manifests)
    deploys = "serving.canary.enabled=true" in sets  # the retrain pod's deploy step
    for component, labels in pods.items():
        needs = NEEDS[component] | ({"api-server"} if component == "retrain" and deploys else set())
        expected = BASE | needs
        if "api-server" in needs and not sets:  # no API server CIDR: its ports anywhere
            expected |= {"internet-https"}
        assert reachable(manifests, labels) == expected, component


def test_the_api_server_rule_without_cidrs_opens_only_its_ports_to_its_two_callers(default, chart):
    (rule,) = default.get("NetworkPolicy", chart.name("rollout-controller-apiserver"))["spec"][
        "egress"
    ]
    assert "to" not in rule
    assert {(p["port"], p["protocol"]) for p in rule["ports"]} == {(443, "TCP"), (6443, "TCP")}
    labels = workloads(default)["serving-production"]
    assert "internet-https" not in reachable(default, labels)


def test_gpu_production_values_reach_the_api_server_and_their_private_network(gpu, chart):
    pods = workloads(gpu)
    allowed = reachable(gpu, pods["retrain"])  # its deploy step (Flagger's target)
    assert "api-server" in allowed and "internet-https" not in allowed
    for component in ("serving-production", "api", "feast", "data-ingest"):
        allowed = reachable(gpu, pods[component])
        assert "api-server" not in allowed and "internet-https" not in allowed, component
        assert BASE | NEEDS[component] <= allowed, component


def test_no_policy_opens_the_whole_internet_unless_the_user_says_so(chart, default, gpu):
    everything = {"0.0.0.0/0", "::/0"}
    for manifests in (default, gpu):
        assert everything.isdisjoint(_cidrs(manifests))
    opened = chart.render(sets=("networkPolicy.egress.allowedCidrs[0]=0.0.0.0/0",))
    assert "0.0.0.0/0" in _cidrs(opened)
    labels = workloads(opened)["serving-production"]
    assert {"internet-http", "internet-https"} <= reachable(opened, labels)


def _cidrs(manifests) -> set[str]:
    return {
        peer["ipBlock"]["cidr"]
        for p in manifests.of_kind("NetworkPolicy")
        for rule in p["spec"].get("egress", [])
        for peer in rule.get("to", [])
        if "ipBlock" in peer
    }


def test_destinations_are_given_by_cidrs_and_selectors(chart):
    manifests = chart.render(
        sets=(
            "networkPolicy.egress.postgresql.cidrs[0]=10.30.0.5/32",
            "networkPolicy.egress.postgresql.selectors=null",
            "networkPolicy.egress.redis.selectors=null",
        )
    )
    policy = manifests.get("NetworkPolicy", chart.name("egress-postgresql"))["spec"]
    assert policy["egress"][0]["to"] == [{"ipBlock": {"cidr": "10.30.0.5/32"}}]
    assert chart.name("egress-redis") not in manifests.names("NetworkPolicy")
    labels = workloads(manifests)["serving-production"]
    assert {"postgresql", "redis"}.isdisjoint(reachable(manifests, labels))


def test_egress_can_be_turned_off(chart):
    manifests = chart.render(sets=("networkPolicy.egress.enabled=false",))
    deny = manifests.get("NetworkPolicy", chart.name("default-deny"))["spec"]
    assert deny["policyTypes"] == ["Ingress"]
    assert not [
        p for p in manifests.of_kind("NetworkPolicy") if "Egress" in p["spec"]["policyTypes"]
    ]


@pytest.mark.parametrize("version", ["1.30", "1.33"])
def test_the_policies_validate_strictly(default, gpu, version):
    for manifests in (default, gpu):
        for policy in manifests.of_kind("NetworkPolicy"):
            kubernetes_validate.validate(policy, version, strict=True)
