"""Every container: resources, probes on the real endpoints, hardened security context,
writable volumes only where MetaRec writes, configuration through env and Secret references."""

from __future__ import annotations

import os
import re

import pytest
from metarec.config import load_settings
from metarec.router_config import GatewayAPIRouterConfig

HOME = "/var/lib/metarec"

# The health endpoints of each long-running process (liveness, readiness).
EXPECTED_PROBES = {
    "api": ("/healthz", "/readyz"),
    "adaptation": ("/livez", "/readyz"),
    "rollout-controller": ("/healthz", "/readyz"),
    "feast": ("/health", "/health"),
}


def test_every_container_requests_and_limits_cpu_and_memory(manifests):
    for where, container in manifests.containers():
        resources = container.get("resources", {})
        for part in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(resources.get(part, {})), f"{where}: {part}"


def test_every_long_running_container_probes_its_real_health_endpoints(manifests):
    deployments = manifests.of_kind("Deployment")
    assert deployments
    for deployment in deployments:
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            where = f"{deployment['metadata']['name']}/{container['name']}"
            liveness, readiness = EXPECTED_PROBES[container["name"]]
            ports = {p["name"]: p["containerPort"] for p in container["ports"]}
            for probe, path in (("livenessProbe", liveness), ("readinessProbe", readiness)):
                assert probe in container, f"{where} lacks {probe}"
                http = container[probe]["httpGet"]
                assert http["path"] == path, where
                assert http["port"] in ports, f"{where}: {probe} on an undeclared port"


def test_batch_containers_are_bounded_in_time(manifests):
    for cronjob in manifests.of_kind("CronJob"):
        job = cronjob["spec"]["jobTemplate"]["spec"]
        assert job["activeDeadlineSeconds"] > 0
        assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"


def test_every_pod_and_container_is_hardened(manifests):
    pods = manifests.pod_specs()
    assert len(pods) >= 4
    for where, pod in pods:
        psc = pod["securityContext"]
        assert psc["runAsNonRoot"] is True, where
        assert psc["runAsUser"] != 0, where
        assert psc["seccompProfile"]["type"] == "RuntimeDefault", where
        assert not pod.get("hostNetwork") and not pod.get("hostPID"), where
    for where, container in manifests.containers():
        sc = container["securityContext"]
        assert sc["runAsNonRoot"] is True, where
        assert sc["readOnlyRootFilesystem"] is True, where
        assert sc["allowPrivilegeEscalation"] is False, where
        assert sc["capabilities"]["drop"] == ["ALL"], where
        assert "add" not in sc["capabilities"], where
        assert sc["seccompProfile"]["type"] == "RuntimeDefault", where
        assert sc.get("privileged", False) is False, where


def test_writable_paths_are_explicit_volumes(manifests):
    for where, pod in manifests.pod_specs():
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert "emptyDir" in volumes["tmp"], where
        home = volumes["metarec-home"]
        assert "emptyDir" in home or "persistentVolumeClaim" in home, where
        for container in pod["containers"]:
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            assert mounts == {"/tmp": "tmp", HOME: "metarec-home"}, where


def test_gpu_values_mount_the_home_claim(gpu):
    for where, pod in gpu.pod_specs():
        volumes = {v["name"]: v for v in pod["volumes"]}
        claim = volumes["metarec-home"]["persistentVolumeClaim"]["claimName"]
        assert claim == "metarec-home", where


def _env(container):
    return {e["name"]: e for e in container["env"]}


def test_every_container_gets_the_platform_configuration(manifests):
    for where, container in manifests.containers():
        env = _env(container)
        assert env["METAREC_HOME"]["value"] == HOME, where
        assert env["METAREC_FEAST__ENVIRONMENT"]["value"] == "cluster", where
        assert env["DO_NOT_TRACK"]["value"] == "1", where
        assert env["PREFECT_SERVER_ANALYTICS_ENABLED"]["value"] == "false", where
        assert env["BENTOML_DO_NOT_TRACK"]["value"] == "true", where
        assert env["METAREC_REGISTRY__ARTIFACT_ROOT"]["value"].startswith("s3://"), where
        for name in (
            "METAREC_FEAST__REDIS_CONNECTION_STRING",
            "METAREC_FEAST__REGISTRY_URL",
            "METAREC_REGISTRY__DATABASE_URL",
        ):
            ref = env[name]["valueFrom"]["secretKeyRef"]
            assert ref["name"] and ref["key"], f"{where}: {name}"
            assert "value" not in env[name], f"{where}: {name} must come from a Secret"


def test_only_the_api_pods_hold_the_api_token(manifests, chart):
    holders = set()
    for where, container in manifests.containers():
        env = _env(container)
        if "METAREC_REGISTRY__API_TOKEN" in env:
            ref = env["METAREC_REGISTRY__API_TOKEN"]["valueFrom"]["secretKeyRef"]
            assert ref == {"name": "metarec-api-token", "key": "token"}, where
            holders.add(where)
    assert holders and all(chart.name("api") in where for where in holders), holders


CREDENTIAL = re.compile(r"PASSWORD|TOKEN|SECRET|ACCESS_KEY|DATABASE_URL|REGISTRY_URL|REDIS")


def test_credentials_come_only_from_secret_references(chart):
    m = chart.render(
        chart.gpu_values,
        sets=[
            "externalS3.existingSecret=s3-keys",
            "externalS3.endpointUrl=https://minio.storage.svc:9000",
        ],
    )
    seen = 0
    for where, container in m.containers():
        for name, var in _env(container).items():
            if CREDENTIAL.search(name):
                assert set(var) == {"name", "valueFrom"}, f"{where}: {name} has a literal value"
                assert "secretKeyRef" in var["valueFrom"], f"{where}: {name}"
                seen += 1
    assert seen >= 5 * len(m.containers())  # database ×2, Redis, S3 key pair
    assert not m.of_kind("Secret")
    # No connection string with credentials anywhere in the output.
    assert not re.search(r"://[^/\s:@]+:[^/\s@]+@", m.text)
    assert not re.search(r"(?i)password\s*[=:]\s*\S", m.text)


def test_only_the_rollout_controller_mounts_a_service_account_token(manifests, chart):
    for where, pod in manifests.pod_specs():
        if where == f"Deployment/{chart.name('rollout-controller')}":
            assert pod["automountServiceAccountToken"] is True
            assert pod["serviceAccountName"] == chart.name("rollout-controller")
        elif where == f"CronJob/{chart.name('retrain')}" and chart.name(
            "deployer"
        ) in manifests.names("ServiceAccount"):  # the deploy step patches its one Deployment
            assert pod["automountServiceAccountToken"] is True
            assert pod["serviceAccountName"] == chart.name("deployer")
        elif where == f"Job/{chart.name('db-migrate')}":  # a pre-install hook: before the SA
            assert pod["automountServiceAccountToken"] is False
            assert pod["serviceAccountName"] == "default"
        else:
            assert pod["automountServiceAccountToken"] is False, where
            assert pod["serviceAccountName"] == chart.name(), where


@pytest.mark.parametrize(
    ("deployment", "args"),
    [
        ("api", ["api", "--host", "0.0.0.0", "--port", "8000"]),
        ("serving-production", ["serve", "--stage", "production", "--port", "3000"]),
        ("serving-canary", ["serve", "--version", "7", "--port", "3000"]),
        ("rollout-controller", ["rollout", "controller", "--health-port", "8081"]),
    ],
)
def test_processes_run_the_metarec_commands_of_the_contract(gpu_embedded, chart, deployment, args):
    (container,) = gpu_embedded.get("Deployment", chart.name(deployment))["spec"]["template"][
        "spec"
    ]["containers"]
    assert container["command"] == ["metarec"]
    assert container["args"] == args
    image = container["image"]
    assert image.startswith("registry.example.com/ml/metarec@sha256:"), "digest wins over tag"


def test_the_adaptation_service_listens_on_every_interface(gpu_embedded, chart):
    for track in ("serving-production", "serving-canary"):
        pod = gpu_embedded.get("Deployment", chart.name(track))["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert _env(container)["METAREC_SERVING__HOST"]["value"] == "0.0.0.0"


def test_the_controller_knows_its_route_and_backends(default, chart):
    (container,) = default.get("Deployment", chart.name("rollout-controller"))["spec"]["template"][
        "spec"
    ]["containers"]
    env = _env(container)
    assert env["METAREC_ROLLOUT__ROUTER__KIND"]["value"] == "gateway-api"
    assert env["METAREC_ROLLOUT__ROUTER__HTTPROUTE"]["value"] == chart.name("serving")
    assert env["METAREC_ROLLOUT__ROUTER__PRODUCTION_BACKEND"]["value"] == chart.name(
        "serving-production"
    )
    assert env["METAREC_ROLLOUT__ROUTER__CANARY_BACKEND"]["value"] == chart.name("serving-canary")
    assert env["METAREC_ROLLOUT__ROUTER__NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == (
        "metadata.namespace"
    )


def test_the_controller_environment_loads_as_its_gateway_api_router(default, chart, monkeypatch):
    (container,) = default.get("Deployment", chart.name("rollout-controller"))["spec"]["template"][
        "spec"
    ]["containers"]
    for key in [k for k in os.environ if k.startswith("METAREC_")]:
        monkeypatch.delenv(key)
    for key, entry in _env(container).items():
        if key.startswith("METAREC_"):
            monkeypatch.setenv(key, entry.get("value", "metarec"))  # valueFrom: the namespace
    router = load_settings().rollout.router
    assert router == GatewayAPIRouterConfig(
        namespace="metarec",
        httproute=chart.name("serving"),
        production_backend=chart.name("serving-production"),
        canary_backend=chart.name("serving-canary"),
    )


def test_feast_server_is_optional_and_serves_the_cluster_store(default, gpu, chart):
    assert chart.name("feast") not in default.names("Deployment")
    (container,) = gpu.get("Deployment", chart.name("feast"))["spec"]["template"]["spec"][
        "containers"
    ]
    assert container["command"] == ["feast"]
    assert container["args"][:3] == ["--chdir", "/app/feature_repo/cluster", "serve"]
    env = _env(container)
    assert "secretKeyRef" in env["METAREC_FEAST_REDIS"]["valueFrom"]
    assert "secretKeyRef" in env["METAREC_FEAST_REGISTRY_URL"]["valueFrom"]
