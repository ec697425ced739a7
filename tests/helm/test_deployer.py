"""The retrain pipeline's deploy step on the chart: the retrain pod's settings, its own
ServiceAccount and a Role limited to get/patch on the one serving Deployment (and Canary)."""

from __future__ import annotations

import os

import kubernetes_validate
import pytest
from metarec.config import load_settings

NO_DEPLOY = ("retrain.deploy.enabled=false",)
EGRESS = ("networkPolicy.egress.enabled=true", "networkPolicy.egress.apiServerCidr=10.0.0.1/32")


def _retrain_pod(m, chart):
    cronjob = m.get("CronJob", chart.name("retrain"))
    return cronjob["spec"]["jobTemplate"]["spec"]["template"]


def _settings(container, monkeypatch):
    """The settings the retrain container loads from its rendered env."""
    for key in [k for k in os.environ if k.startswith("METAREC_")]:
        monkeypatch.delenv(key)
    for var in container["env"]:
        if not var["name"].startswith("METAREC_"):
            continue
        source = var.get("valueFrom", {})
        if "fieldRef" in source:
            assert source["fieldRef"] == {"fieldPath": "metadata.namespace"}, var["name"]
        value = var.get("value", "metarec" if "fieldRef" in source else "from-a-secret")
        monkeypatch.setenv(var["name"], value)
    return load_settings()


def _rbac(m, chart):
    name = chart.name("deployer")
    role, binding = m.get("Role", name), m.get("RoleBinding", name)
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                  "name": name}  # fmt: skip
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": name, "namespace": chart.namespace}
    ]
    assert m.get("ServiceAccount", name)["automountServiceAccountToken"] is False
    return role["rules"]


def test_embedded_deploy_step_may_patch_only_the_canary_deployment(
    gpu_embedded, chart, monkeypatch
):
    canary = chart.name("serving-canary")
    assert _rbac(gpu_embedded, chart) == [
        {"apiGroups": ["apps"], "resources": ["deployments"], "resourceNames": [canary],
         "verbs": ["get", "patch"]}
    ]  # fmt: skip
    pod = _retrain_pod(gpu_embedded, chart)
    assert pod["metadata"]["labels"]["app.kubernetes.io/component"] == "retrain"
    spec = pod["spec"]
    assert spec["serviceAccountName"] == chart.name("deployer")
    assert spec["automountServiceAccountToken"] is True
    (container,) = spec["containers"]
    assert container["args"] == ["flows", "run", "retrain"]
    settings = _settings(container, monkeypatch)
    deploy = settings.rollout.deploy
    assert (deploy.kind, deploy.engine, deploy.namespace) == ("kubernetes", "embedded", "metarec")
    assert (deploy.deployment, deploy.container, deploy.port) == (canary, "adaptation", 3000)
    served = gpu_embedded.get("Deployment", canary)["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in served] == [deploy.container]
    router = settings.rollout.router
    assert (router.kind, router.httproute, router.canary_backend) == (
        "gateway-api", chart.name("serving"), canary
    )  # fmt: skip


def test_flagger_deploy_step_may_patch_only_its_target_and_canary(gpu, chart, monkeypatch):
    target = chart.name("serving-production")
    (canary,) = gpu.of_kind("Canary")
    assert canary["spec"]["targetRef"]["name"] == target
    assert _rbac(gpu, chart) == [
        {"apiGroups": ["apps"], "resources": ["deployments"], "resourceNames": [target],
         "verbs": ["get", "patch"]},
        {"apiGroups": ["flagger.app"], "resources": ["canaries"],
         "resourceNames": [canary["metadata"]["name"]], "verbs": ["get", "patch"]},
    ]  # fmt: skip
    (container,) = _retrain_pod(gpu, chart)["spec"]["containers"]
    deploy = _settings(container, monkeypatch).rollout.deploy
    assert (deploy.kind, deploy.engine, deploy.deployment) == ("kubernetes", "flagger", target)
    assert deploy.flagger_canary == canary["metadata"]["name"]
    hooks = [h["name"] for h in canary["spec"]["analysis"]["webhooks"]]
    assert all(name.startswith("metarec-") for name in hooks), "the deployer sets these"


@pytest.mark.parametrize(
    "sets",
    [(), ("serving.canary.enabled=true", "rollout.controller.enabled=false"), NO_DEPLOY],
    ids=["no-canary", "no-controller", "deploy-off"],
)
def test_without_a_target_the_retrain_pod_keeps_no_token_and_no_rights(chart, sets, monkeypatch):
    m = chart.render(sets=(*sets, "serving.canary.version=3", *EGRESS))
    assert chart.name("deployer") not in m.names("ServiceAccount") | m.names("Role")
    assert chart.name("deployer-apiserver") not in m.names("NetworkPolicy")
    spec = _retrain_pod(m, chart)["spec"]
    assert spec["serviceAccountName"] == chart.name()
    assert spec["automountServiceAccountToken"] is False
    assert _settings(spec["containers"][0], monkeypatch).rollout.deploy.kind == "none"


def test_the_canary_starts_as_production_until_the_deploy_step_pins_a_version(chart):
    m = chart.render(sets=("serving.canary.enabled=true",))
    (container,) = m.get("Deployment", chart.name("serving-canary"))["spec"]["template"]["spec"][
        "containers"
    ]
    assert container["args"] == ["serve", "--stage", "production", "--port", "3000"]
    with pytest.raises(chart.RenderError, match=r"serving\.canary\.version is required"):
        chart.render(sets=("serving.canary.enabled=true", *NO_DEPLOY))


def test_the_retrain_pod_may_reach_the_api_server_with_egress_restricted(chart):
    canary = ("serving.canary.enabled=true",)
    m = chart.render(sets=(*canary, *EGRESS))
    policy = m.get("NetworkPolicy", chart.name("deployer-apiserver"))["spec"]
    labels = _retrain_pod(m, chart)["metadata"]["labels"]
    assert policy["podSelector"]["matchLabels"].items() <= labels.items()
    assert policy["policyTypes"] == ["Egress"]
    assert policy["egress"][0]["to"] == [{"ipBlock": {"cidr": "10.0.0.1/32"}}]
    egress_off = chart.render(sets=(*canary, "networkPolicy.egress.enabled=false")).names(
        "NetworkPolicy"
    )
    assert chart.name("deployer-apiserver") not in egress_off


@pytest.mark.parametrize("version", ["1.30", "1.33"])
def test_the_deploy_step_objects_validate_strictly(gpu, gpu_embedded, chart, version):
    name = chart.name("deployer")
    egress = chart.render(chart.gpu_values, sets=EGRESS)  # (as the GPU values have it)
    docs = [
        *(m.get(kind, name) for m in (gpu, gpu_embedded)
          for kind in ("ServiceAccount", "Role", "RoleBinding")),
        gpu.get("CronJob", chart.name("retrain")),
        gpu_embedded.get("CronJob", chart.name("retrain")),
        egress.get("NetworkPolicy", chart.name("deployer-apiserver")),
    ]  # fmt: skip
    for doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)
