"""Weighted routing, the controller's least-privilege RBAC, NetworkPolicies, PDB and HPA."""

from __future__ import annotations

import pytest


def _weights(m, chart):
    (route,) = m.of_kind("HTTPRoute")
    (rule,) = route["spec"]["rules"]
    return {ref["name"]: ref["weight"] for ref in rule["backendRefs"]}


def test_production_takes_all_traffic_without_a_canary(default, chart):
    assert _weights(default, chart) == {chart.name("serving-production"): 100}


def test_canary_and_production_weights_sum_to_100(gpu_embedded, chart):
    weights = _weights(gpu_embedded, chart)
    assert weights == {chart.name("serving-production"): 90, chart.name("serving-canary"): 10}
    assert sum(weights.values()) == 100


@pytest.mark.parametrize("split", [(75, 25), (50, 50), (0, 100)])
def test_any_split_that_sums_to_100_renders(chart, split):
    production, canary = split
    m = chart.render(
        chart.gpu_values,
        sets=[
            *chart.gpu_embedded,
            f"route.weights.production={production}",
            f"route.weights.canary={canary}",
        ],
    )
    assert sorted(_weights(m, chart).values()) == sorted(split)


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["route.weights.canary=20"], "must sum to 100"),
        (["route.weights.production=90", "route.weights.canary=10"], "serving.canary.enabled"),
        (
            [
                *("serving.canary.enabled=true", "route.weights.production=100"),
                "retrain.deploy.enabled=false",
            ],
            "serving.canary.version",
        ),
    ],
)
def test_inconsistent_routing_values_fail_naming_the_values(chart, sets, message):
    with pytest.raises(chart.RenderError, match=message):
        chart.render(sets=sets)


def test_route_attaches_to_the_configured_gateway(gpu_embedded):
    (route,) = gpu_embedded.of_kind("HTTPRoute")
    assert route["spec"]["parentRefs"] == [
        {
            "group": "gateway.networking.k8s.io",
            "kind": "Gateway",
            "name": "public-gateway",
            "namespace": "gateway-system",
            "sectionName": "https",
        }
    ]
    assert route["spec"]["hostnames"] == ["recommend.example.com"]


def test_controller_may_only_get_and_patch_its_own_httproute(manifests, chart):
    assert not manifests.of_kind("ClusterRole")
    assert not manifests.of_kind("ClusterRoleBinding")
    role = manifests.get("Role", chart.name("rollout-controller"))
    (rule,) = role["rules"]
    (route,) = manifests.of_kind("HTTPRoute")
    assert rule == {
        "apiGroups": ["gateway.networking.k8s.io"],
        "resources": ["httproutes"],
        "resourceNames": [route["metadata"]["name"]],
        "verbs": ["get", "patch"],
    }
    binding = manifests.get("RoleBinding", chart.name("rollout-controller"))
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {
            "kind": "ServiceAccount",
            "name": chart.name("rollout-controller"),
            "namespace": chart.namespace,
        }
    ]


def test_no_controller_means_no_rbac(chart):
    m = chart.render(sets=["rollout.controller.enabled=false"])
    assert not m.of_kind("Role") and not m.of_kind("RoleBinding")
    assert chart.name("rollout-controller") not in m.names("Deployment")


def test_service_accounts_do_not_automount_tokens(manifests):
    for sa in manifests.of_kind("ServiceAccount"):
        assert sa["automountServiceAccountToken"] is False


def test_network_policies_deny_by_default_and_open_only_the_service_paths(gpu, chart):
    policies = {p["metadata"]["name"]: p["spec"] for p in gpu.of_kind("NetworkPolicy")}
    deny = policies[chart.name("default-deny")]
    assert deny["podSelector"]["matchLabels"] == {
        "app.kubernetes.io/name": "metarec",
        "app.kubernetes.io/instance": chart.release,
    }
    assert "ingress" not in deny and set(deny["policyTypes"]) == {"Ingress", "Egress"}
    dns_ports = {(p["port"], p["protocol"]) for p in deny["egress"][0]["ports"]}
    assert dns_ports == {(53, "UDP"), (53, "TCP")}

    serving = policies[chart.name("serving")]
    (rule,) = serving["ingress"]
    sources = rule["from"]
    gateway_ns = {"kubernetes.io/metadata.name": "gateway-system"}
    assert {"namespaceSelector": {"matchLabels": gateway_ns}} in sources
    assert rule["ports"] == [{"port": "http", "protocol": "TCP"}]

    api_server = policies[chart.name("rollout-controller-apiserver")]
    selector = api_server["podSelector"]["matchLabels"]
    assert selector["app.kubernetes.io/component"] == "rollout-controller"
    assert api_server["egress"][0]["to"] == [{"ipBlock": {"cidr": "10.0.0.1/32"}}]
    assert chart.name("feast") in policies


def test_network_policies_can_be_disabled(chart):
    assert not chart.render(sets=["networkPolicy.enabled=false"]).of_kind("NetworkPolicy")


def test_production_service_scales_with_an_hpa_and_keeps_a_pdb(gpu, chart):
    production = chart.name("serving-production")
    (hpa,) = gpu.of_kind("HorizontalPodAutoscaler")
    target = {"apiVersion": "apps/v1", "kind": "Deployment", "name": production}
    assert hpa["spec"]["scaleTargetRef"] == target
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 20)
    assert "replicas" not in gpu.get("Deployment", production)["spec"], "the HPA owns replicas"
    pdbs = {p["metadata"]["name"]: p["spec"] for p in gpu.of_kind("PodDisruptionBudget")}
    deployment_labels = gpu.get("Deployment", production)["spec"]["template"]["metadata"]["labels"]
    selector = pdbs[production]["selector"]["matchLabels"]
    assert selector.items() <= deployment_labels.items()
    assert pdbs[production]["minAvailable"] == 2
    assert chart.name("api") in pdbs


def test_services_select_exactly_their_deployments(manifests):
    deployments = manifests.of_kind("Deployment")
    for service in manifests.of_kind("Service"):
        selector = service["spec"]["selector"].items()
        matched = [
            d["metadata"]["name"]
            for d in deployments
            if selector <= d["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert matched == [service["metadata"]["name"]], service["metadata"]["name"]
