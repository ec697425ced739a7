"""Every Deployment of the chart starts with its rendered env and answers its own probes.

The chart is rendered with the harness values plus the optional Deployments turned on (the
serving canary, the Feast feature server), so every kind of long-running pod runs. Each pod is a
local process (``workloads.pod_process``) on free ports; its readinessProbe must answer 200 in
time, then its livenessProbe. Before the pods start, a tiny version is trained and registered the
way the retrain job does it, from the rendered env: the registry database and the artifact root
on the S3 server (``METAREC_REGISTRY__ARTIFACT_ROOT``); the serving pods load it from S3 and
``/recommend`` answers with it.

The rollout controller's pod mounts its service-account token (the only one that does): the
harness stands in for it with a kubeconfig pointing at an address where no API server listens.
The controller's readiness (router and metric source wired) makes no API call; a route patch
would fail, and no rollout is active here.
"""

from __future__ import annotations

import sys
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

# Loaded from its file by tests/cluster/conftest.py (tests/ is not a package).
workloads = sys.modules["metarec_tests_cluster_workloads"]

pytestmark = [pytest.mark.integration, pytest.mark.slow]

READY_TIMEOUT_S = 150.0
STOP_GRACE_S = 2.0
# Fewer steps than SMALL_CONFIG: the test needs a version that loads and ranks, not a good one.
TINY = {"max_steps": 4, "ranker_max_steps": 4, "factor_pretrain_steps": 4, "factor_max_steps": 2}


def _settings_from_env(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Any:
    """The settings a pod with ``env`` loads, in this process (its ``METAREC_*`` and ``AWS_*``
    variables applied; the BentoML export off, as no pod reads BentoML's store)."""
    from metarec.config import load_settings

    for name, value in env.items():
        if name.startswith(("METAREC_", "AWS_")):
            monkeypatch.setenv(name, value)
    return load_settings(registry={"export_bentoml": False})


def _register_version(settings: Any, workdir: Path) -> Any:
    """Ingest a small synthetic catalogue into the cluster feature store (Redis, PostgreSQL
    registry), build a training set, train and register a tiny version in production."""
    from metarec.data.ingest import DataSource, read_source, write_snapshot
    from metarec.data.snapshots import SnapshotStore
    from metarec.data.synthetic import SyntheticSpec
    from metarec.features.store import apply_features, materialize_features
    from metarec.features.training_set import build_training_set
    from metarec.testing.serving import mark_validated, train_and_register

    spec = SyntheticSpec(
        n_users=50, n_items=60, min_ratings_per_user=15, max_ratings_per_user=25, seed=3
    )
    dataset = read_source(DataSource.SYNTHETIC, download_dir=workdir, synthetic=spec)
    snapshot = write_snapshot(dataset, SnapshotStore(settings.paths.snapshots))
    apply_features(settings, snapshot)
    materialize_features(settings)
    build_training_set(settings, out=workdir / "training_set.parquet")
    validated = mark_validated(
        workdir / "training_set.parquet", workdir / "validated" / "training_set.parquet"
    )
    return train_and_register(settings, validated, workdir=workdir / "train", config=TINY)


def _kubeconfig(path: Path, *, namespace: str) -> Path:
    """A kubeconfig with a dummy token for an address where no API server listens."""
    server = f"https://127.0.0.1:{workloads.free_port()}"
    path.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: harness\n"
        f"clusters: [{{name: harness, cluster: {{server: '{server}'}}}}]\n"
        "users: [{name: harness, user: {token: harness-token}}]\n"
        "contexts: [{name: harness, context: {cluster: harness, user: harness, "
        f"namespace: {namespace}}}}}]\n"
    )
    return path


@pytest.fixture
def model_name() -> str:
    """A model of this test only: other tests share the registry database."""
    return f"cluster-{uuid.uuid4().hex[:10]}"


def _pods(cluster, manifests, kubeconfig: Path) -> dict[str, Any]:
    """A pod process (not started) per rendered Deployment, by Deployment name, each with its
    own empty home and temporary folder (the chart's ``emptyDir`` volumes, without
    ``home.existingClaim``): nothing reaches a pod through the home the harness values share."""
    objects = workloads.Objects.of(manifests.docs, secrets=cluster.secrets)
    pods = {}
    for doc in manifests.of_kind("Deployment"):
        name = doc["metadata"]["name"]
        volumes = cluster.workdir / "pods" / name
        spec = workloads.with_home(
            workloads.deployment_pod_spec(doc), cluster.values["home"]["path"], volumes / "home"
        )
        (volumes / "tmp").mkdir()
        pods[name] = workloads.pod_process(
            spec,
            objects,
            name=f"{name}-harness",
            namespace=cluster.chart.namespace,
            cwd=cluster.workdir,
            node_env={
                "TMPDIR": str(volumes / "tmp"),
                **workloads.api_access_env(spec, kubeconfig=kubeconfig),
            },
        )
    return pods


def _serves_a_version(doc: dict[str, Any]) -> bool:
    """Whether the Deployment's pod needs a version in the registry to start (serving)."""
    component = doc["metadata"]["labels"]["app.kubernetes.io/component"]
    return component.startswith("serving-")


def _ready(pod: Any) -> tuple[str, float | str]:
    try:
        return "ready", pod.wait_ready(timeout_s=READY_TIMEOUT_S)
    except workloads.PodStartError as exc:
        return "failed", str(exc)


def _probe_all(pods: dict[str, Any], waits: dict[str, Future]) -> dict[str, dict[str, int]]:
    """Every pod's readiness wait, then one GET of each of its probes.

    Returns:
        {Deployment: {probe kind: status}}; a pod that never became ready fails the test with
        its output.
    """
    results = {name: wait.result() for name, wait in waits.items()}
    failed = {name: detail for name, (state, detail) in results.items() if state != "ready"}
    assert not failed, "\n\n".join(f"{name}: {detail}" for name, detail in failed.items())
    probed = {}
    for name, (_, seconds) in sorted(results.items()):
        probed[name] = {kind: probe.get()[0] for kind, probe in pods[name].probes.items()}
        print(f"{name}: ready {seconds:.1f} s after its start; probes {probed[name]}")
    return probed


def test_every_deployment_answers_its_probes_and_serving_loads_the_version_from_s3(
    cluster, s3, model_name, monkeypatch, tmp_path
):
    t0 = time.monotonic()
    # A fresh model: its first version is v1, which the canary Deployment is rendered with.
    manifests = cluster.render(
        extraEnv=[{"name": "METAREC_REGISTRY__MODEL_NAME", "value": model_name}],
        serving={"canary": {"enabled": True, "version": "1"}},
        route={"weights": {"production": 90, "canary": 10}},
        feast={"server": {"enabled": True}},
    )
    rendered = manifests.names("Deployment")
    expected = {"api", "rollout-controller", "feast", "serving-production", "serving-canary"}
    assert {cluster.chart.name(c) for c in expected} <= rendered, sorted(rendered)
    kubeconfig = _kubeconfig(tmp_path / "kubeconfig", namespace=cluster.chart.namespace)
    pods = _pods(cluster, manifests, kubeconfig)
    serving = {
        d["metadata"]["name"] for d in manifests.of_kind("Deployment") if _serves_a_version(d)
    }
    # The registry and feature-store settings of the serving pods; the version is prepared in
    # the home of the harness values (the retrain pod's), not in a serving pod's own.
    env = {
        **pods[cluster.chart.name("serving-production")].env,
        "METAREC_HOME": str(cluster.home),
        # Registered as the writer role would (the retrain job): the serving role only reads.
        "METAREC_REGISTRY__DATABASE_URL": cluster.secrets["metarec-database"]["registry-url"],
    }
    assert env["METAREC_REGISTRY__ARTIFACT_ROOT"] == s3.url("artifacts")

    waits: dict[str, Future] = {}
    # Stopping the pods (inner) ends the readiness waits (outer) of a failed test at once.
    # A short grace period: graceful shutdown is not under test (`feast serve` takes ≈5 s).
    stop = workloads.stopping(list(pods.values()), grace_s=STOP_GRACE_S)
    with ThreadPoolExecutor(len(pods)) as pool, stop:
        # The pods that need no version start while the version is prepared.
        for name in sorted(set(pods) - serving):
            waits[name] = pool.submit(_ready, pods[name].start())
        version = _register_version(_settings_from_env(env, monkeypatch), tmp_path / "prepare")
        print(f"{version.tag} registered {time.monotonic() - t0:.1f} s in: {version.artifact_uri}")
        assert version.version == 1 and version.artifact_uri.startswith(s3.url("artifacts"))
        for name in sorted(serving):
            # Its own home is empty: the version can only come through the registry from S3.
            assert not any((cluster.workdir / "pods" / name / "home").iterdir())
            waits[name] = pool.submit(_ready, pods[name].start())
        probed = _probe_all(pods, waits)

        # Every rendered Deployment had both probes checked: a new one cannot be skipped.
        assert probed == {name: {"readiness": 200, "liveness": 200} for name in rendered}
        for name in sorted(serving):
            pod = pods[name]
            answer = httpx.post(
                f"{pod.url('http')}/recommend", json={"user_id": 1, "k": 5}, timeout=60
            )
            assert answer.status_code == 200, f"{name}: {answer.text}\n{pod.output()}"
            body = answer.json()
            assert body["model_version"] == version.tag, body
            assert len(body["items"]) == 5 and all(item["item_id"] for item in body["items"])
        print(f"all ready and answered {time.monotonic() - t0:.1f} s after the render")
