"""The deploy step against the real Kubernetes client, talking to a tiny local API server.

The server stores one serving Deployment and one Flagger Canary (shaped as the Helm chart
renders them), answers GET and applies every PATCH (a strategic merge patch of the Deployment:
containers merged by name; a JSON merge patch of the Canary) with resourceVersion checks, and
can answer 409 or 403. ``release_canary`` runs with ``rollout.deploy.kind: kubernetes``: it
reaches the server through a kubeconfig, as it would outside a pod, and never starts a service.
"""

from __future__ import annotations

import copy
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from metarec.config import Settings, load_settings
from metarec.errors import DeployError
from metarec.ops import release_canary
from metarec.ops.deploy import deploy_version
from metarec.ops.flagger import promote_canary, roll_back_canary, webhook_evidence
from metarec.registry import Action, Registry, Stage, VersionRef
from metarec.rollout.deployer import VERSION_ANNOTATION, KubernetesDeployer
from metarec.rollout.store import RolloutStore
from metarec.rollout.types import Phase, RolloutSpec
from metarec.testing.registry import register_fixture

pytestmark = pytest.mark.integration

NS = "ml"
DEPLOYMENT = "mr-metarec-serving-canary"
CANARY = "mr-metarec-serving"
DEPLOYMENT_PATH = f"/apis/apps/v1/namespaces/{NS}/deployments/{DEPLOYMENT}"
CANARY_PATH = f"/apis/flagger.app/v1beta1/namespaces/{NS}/canaries/{CANARY}"
CHART_HOOKS = ("metarec-pre-rollout", "metarec-confirm-promotion", "metarec-promote")
SERVE_ARGS = ["serve", "--stage", "production", "--port", "3000", "--host", "0.0.0.0"]


def deployment() -> dict[str, Any]:
    labels = {"app.kubernetes.io/component": "serving-canary"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": DEPLOYMENT, "namespace": NS, "resourceVersion": "1", "generation": 1},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels, "annotations": {"team": "ml"}},
                "spec": {
                    "containers": [
                        {
                            "name": "adaptation",
                            "image": "metarec:1",
                            "command": ["metarec"],
                            "args": list(SERVE_ARGS),
                            "env": [{"name": "METAREC_HOME", "value": "/home"}],
                        },
                        {"name": "proxy", "image": "envoy:1", "args": ["--config", "x"]},
                    ]
                },
            },
        },
        "status": {"observedGeneration": 1, "replicas": 2, "updatedReplicas": 2,
                   "availableReplicas": 2},
    }  # fmt: skip


def canary() -> dict[str, Any]:
    hooks = [
        {"name": name, "type": "pre-rollout", "url": "http://api/flagger/x",
         "metadata": {"token": "secret", "model": "metarec"}}
        for name in CHART_HOOKS
    ]  # fmt: skip
    hooks.append({"name": "load-test", "type": "rollout", "url": "http://loadtester/"})
    return {
        "apiVersion": "flagger.app/v1beta1",
        "kind": "Canary",
        "metadata": {"name": CANARY, "namespace": NS, "resourceVersion": "1"},
        "spec": {"analysis": {"interval": "1m", "webhooks": hooks}},
    }


def merge(target: Any, patch: Any) -> Any:
    """A JSON merge patch; with ``strategic``, lists of named items are merged by name."""
    if not isinstance(patch, dict) or not isinstance(target, dict):
        return patch
    out = dict(target)
    for key, value in patch.items():
        current = target.get(key)
        if key == "containers" and isinstance(value, list):
            by_name = {c["name"]: c for c in current or []}
            for item in value:
                by_name[item["name"]] = merge(by_name.get(item["name"], {}), item)
            out[key] = list(by_name.values())
        else:
            out[key] = merge(current or {}, value) if isinstance(value, dict) else value
    return out


class FakeAPIServer:
    """Stores the Deployment and the Canary; records every request."""

    def __init__(self) -> None:
        self.objects = {DEPLOYMENT_PATH: deployment(), CANARY_PATH: canary()}
        self.requests: list[dict[str, Any]] = []
        self.conflicts: dict[str, int] = {}
        self.forbidden: set[str] = set()
        self.not_ready_reads = 0  # GETs that still show the previous generation rolling out
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return

            def _send(self, status: int, payload: dict[str, Any]) -> None:
                body = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _refuse(self) -> bool:
                if self.path in fake.forbidden:
                    self._send(403, {"kind": "Status", "code": 403, "reason": "Forbidden"})
                    return True
                if self.path not in fake.objects:
                    self._send(404, {"kind": "Status", "code": 404, "reason": "NotFound"})
                    return True
                return False

            def do_GET(self) -> None:
                fake.requests.append({"method": "GET", "path": self.path})
                if not self._refuse():
                    self._send(200, fake.read(self.path))

            def do_PATCH(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                fake.requests.append(
                    {"method": "PATCH", "path": self.path,
                     "content_type": self.headers["content-type"], "body": body}
                )  # fmt: skip
                if not self._refuse():
                    self._send(*fake.patch(self.path, body))

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

    def read(self, path: str) -> dict[str, Any]:
        stored = copy.deepcopy(self.objects[path])
        if path == DEPLOYMENT_PATH and self.not_ready_reads > 0:
            self.not_ready_reads -= 1
            stored["status"]["observedGeneration"] = stored["metadata"]["generation"] - 1
        return stored

    def patch(self, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        stored = self.objects[path]
        if self.conflicts.get(path):  # someone else wrote the object in between
            self.conflicts[path] -= 1
            stored["metadata"]["resourceVersion"] = str(
                int(stored["metadata"]["resourceVersion"]) + 1
            )
        if body.get("metadata", {}).get("resourceVersion") != stored["metadata"]["resourceVersion"]:
            return 409, {"kind": "Status", "code": 409, "reason": "Conflict"}
        updated = merge(stored, body)
        updated["metadata"]["resourceVersion"] = str(int(stored["metadata"]["resourceVersion"]) + 1)
        if path == DEPLOYMENT_PATH and updated["spec"] != stored["spec"]:
            updated["metadata"]["generation"] += 1
            updated["status"]["observedGeneration"] = updated["metadata"]["generation"]
        self.objects[path] = updated
        return 200, copy.deepcopy(updated)

    def patches(self, path: str) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["method"] == "PATCH" and r["path"] == path]

    def args(self) -> list[str]:
        return self.objects[DEPLOYMENT_PATH]["spec"]["template"]["spec"]["containers"][0]["args"]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def reads_after_patch(server: FakeAPIServer) -> int:
    """GETs of the Deployment after its (last) PATCH."""
    paths = [(r["method"], r["path"]) for r in server.requests]
    last = max(i for i, seen in enumerate(paths) if seen == ("PATCH", DEPLOYMENT_PATH))
    return paths[last:].count(("GET", DEPLOYMENT_PATH))


@pytest.fixture
def api_server() -> Iterator[FakeAPIServer]:
    server = FakeAPIServer()
    yield server
    server.close()


def deploy_settings(tmp_path: Path, *, engine: str = "embedded") -> Settings:
    deploy = {"kind": "kubernetes", "engine": engine, "namespace": NS, "deployment": DEPLOYMENT,
              "flagger_canary": CANARY, "ready_timeout_s": 10}  # fmt: skip
    return load_settings(
        home=tmp_path / "home",
        registry={"export_bentoml": False},
        rollout={"deploy": deploy, "poll_s": 0.05},
    )


@pytest.fixture
def staged(tmp_path: Path) -> VersionRef:
    """v1 in production, v2 (gated) in staging."""
    with Registry.open(deploy_settings(tmp_path)) as registry:
        register_fixture(registry, tmp_path / "a1", seed=1)
        register_fixture(registry, tmp_path / "a2", seed=2)
        registry.promote(VersionRef(model="metarec", version=1), actor="t", reason="r")
    return VersionRef(model="metarec", version=2)


def deployer(api_server: FakeAPIServer, *, engine: str = "embedded") -> KubernetesDeployer:
    api = client.ApiClient(client.Configuration(host=api_server.url))
    return KubernetesDeployer(
        api_client=api, namespace=NS, deployment=DEPLOYMENT, container="adaptation", port=3000,
        flagger_canary=CANARY if engine == "flagger" else "",
    )  # fmt: skip


def test_deploy_sets_the_version_and_keeps_everything_else(api_server, tmp_path, staged):
    before = deployment()
    api_server.not_ready_reads = 2  # the new pods take a moment: the step waits for them
    done = deploy_version(deploy_settings(tmp_path), ref=staged, deployer=deployer(api_server))
    assert done.patched and done.canary is None
    [patch] = api_server.patches(DEPLOYMENT_PATH)
    assert patch["content_type"] == "application/strategic-merge-patch+json"
    assert patch["body"]["metadata"] == {"resourceVersion": "1"}
    assert api_server.args() == ["serve", "--version", "2", "--port", "3000", "--host", "0.0.0.0"]
    stored = api_server.objects[DEPLOYMENT_PATH]["spec"]["template"]
    assert stored["metadata"]["annotations"] == {"team": "ml", VERSION_ANNOTATION: "metarec:v2"}
    adaptation, proxy = stored["spec"]["containers"]
    assert adaptation["env"] == before["spec"]["template"]["spec"]["containers"][0]["env"]
    assert proxy == before["spec"]["template"]["spec"]["containers"][1]
    # It waited for the new pods: one read still rolling out, one rolled out.
    assert reads_after_patch(api_server) == 2
    assert not api_server.patches(CANARY_PATH)
    # A retried step changes nothing.
    again = deploy_version(deploy_settings(tmp_path), ref=staged, deployer=deployer(api_server))
    assert not again.patched and len(api_server.patches(DEPLOYMENT_PATH)) == 1


def test_conflicts_are_re_read_and_retried(api_server, tmp_path, staged):
    api_server.conflicts = {DEPLOYMENT_PATH: 1, CANARY_PATH: 1}
    deploy_version(
        deploy_settings(tmp_path, engine="flagger"),
        ref=staged,
        deployer=deployer(api_server, engine="flagger"),
    )
    for path in (DEPLOYMENT_PATH, CANARY_PATH):
        versions = [p["body"]["metadata"]["resourceVersion"] for p in api_server.patches(path)]
        assert versions == ["1", "2"], path
    assert api_server.args()[:3] == ["serve", "--version", "2"]


def test_forbidden_names_the_chart_role_and_missing_objects_the_setting(
    api_server, tmp_path, staged
):
    api_server.forbidden = {DEPLOYMENT_PATH}
    with pytest.raises(DeployError, match=r"HTTP 403.*<fullname>-deployer"):
        deploy_version(deploy_settings(tmp_path), ref=staged, deployer=deployer(api_server))
    api_server.forbidden = set()
    del api_server.objects[CANARY_PATH]
    with pytest.raises(DeployError, match=r"HTTP 404.*rollout\.deploy\.flagger_canary"):
        deploy_version(
            deploy_settings(tmp_path, engine="flagger"),
            ref=staged,
            deployer=deployer(api_server, engine="flagger"),
        )
    assert not api_server.patches(DEPLOYMENT_PATH), "the target changed without the Canary"


def test_flagger_canary_webhooks_name_the_version_before_the_target_changes(
    api_server, tmp_path, staged
):
    done = deploy_version(
        deploy_settings(tmp_path, engine="flagger"),
        ref=staged,
        deployer=deployer(api_server, engine="flagger"),
    )
    assert done.canary == f"{NS}/{CANARY}" and done.canary_patched
    order = [r["path"] for r in api_server.requests if r["method"] == "PATCH"]
    assert order == [CANARY_PATH, DEPLOYMENT_PATH]
    hooks = api_server.objects[CANARY_PATH]["spec"]["analysis"]["webhooks"]
    for hook in hooks[:-1]:
        assert hook["metadata"] == {"token": "secret", "model": "metarec", "version": "metarec:v2"}
    assert hooks[-1] == canary()["spec"]["analysis"]["webhooks"][-1], "not a chart webhook"
    assert reads_after_patch(api_server) == 0, "Flagger scales its target: nothing to wait for"
    assert api_server.args()[:3] == ["serve", "--version", "2"]


@pytest.fixture
def kubeconfig(api_server: FakeAPIServer, tmp_path: Path, monkeypatch) -> None:
    """Outside a pod: the deployer of the settings reaches the fake server by a kubeconfig."""
    path = tmp_path / "kubeconfig"
    path.write_text(
        json.dumps(
            {"apiVersion": "v1", "kind": "Config", "current-context": "fake",
             "clusters": [{"name": "fake", "cluster": {"server": api_server.url}}],
             "users": [{"name": "u", "user": {"token": "t"}}],
             "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "u"}}]}
        )
    )  # fmt: skip
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(path))

    def no_local_canary(*_args: Any, **_kwargs: Any) -> None:
        raise AssertionError("the deploy step must never start services in its own pod")

    monkeypatch.setattr("metarec.ops.local_canary.run_local_canary", no_local_canary)


def flagger(api_server: FakeAPIServer, settings: Settings, *, phase: str) -> threading.Thread:
    """Flagger: once the target serves a version, its post-rollout webhook reaches the registry
    with the Canary's webhook metadata (as `metarec api` would pass it on)."""

    def run() -> None:
        while "--version" not in api_server.args():
            time.sleep(0.02)
        [hook] = [
            h for h in api_server.objects[CANARY_PATH]["spec"]["analysis"]["webhooks"]
            if h["name"] == "metarec-promote"
        ]  # fmt: skip
        payload = {"name": CANARY, "namespace": NS, "phase": phase, "metadata": hook["metadata"]}
        follow = promote_canary if phase == "Succeeded" else roll_back_canary
        follow(settings, metadata=hook["metadata"], phase=phase,
               evidence=webhook_evidence(payload, hook="post-rollout"))  # fmt: skip

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize(
    ("phase", "outcome", "stage", "production"),
    [("Succeeded", "promoted", Stage.PRODUCTION, 2), ("Failed", "rolled-back", Stage.ARCHIVED, 1)],
)
def test_release_with_flagger_deploys_then_follows_the_registry(
    api_server, tmp_path, staged, kubeconfig, phase, outcome, stage, production
):
    settings = deploy_settings(tmp_path, engine="flagger")
    webhook = flagger(api_server, settings, phase=phase)
    result = release_canary(
        settings, ref=staged, spec=RolloutSpec(), actor="pipeline", timeout_s=20
    )
    webhook.join(5)
    assert (result.outcome, result.production_before, result.production_after) == (
        outcome, 1, production
    )  # fmt: skip
    assert result.state is None and result.reports == {}
    with Registry.open(settings) as registry:
        assert registry.get_version(staged).stage is stage
        last = registry.history("metarec")[-1]
        assert last.actor == "flagger" and last.evidence["hook"] == "post-rollout"
        assert RolloutStore(engine=registry.engine).latest("metarec") is None
    assert api_server.args()[:3] == ["serve", "--version", "2"]


def test_release_with_flagger_times_out_leaving_the_version_in_staging(
    api_server, tmp_path, staged, kubeconfig
):
    settings = deploy_settings(tmp_path, engine="flagger")
    result = release_canary(settings, ref=staged, spec=RolloutSpec(), actor="p", timeout_s=0.3)
    assert result.outcome == "aborted" and "stays in staging" in result.reason
    assert not result.promoted and result.production_after == 1


def test_release_with_the_embedded_engine_deploys_before_the_controller_runs_it(
    api_server, tmp_path, staged, kubeconfig, monkeypatch
):
    settings = deploy_settings(tmp_path)
    monkeypatch.setattr("metarec.ops.canary.write_reports", lambda *_args: {})  # plots: slow
    seen: dict[str, Any] = {}

    def controller() -> None:
        with Registry.open(settings) as registry:
            store = RolloutStore(engine=registry.engine)
            while not store.active("metarec"):
                time.sleep(0.02)
            (state,) = store.active("metarec")
            seen["args_at_start"] = list(api_server.args())
            registry.promote(staged, actor="rollout-controller", reason="canary passed")
            store.save(state.model_copy(update={"phase": Phase.SUCCEEDED, "message": "passed"}))

    thread = threading.Thread(target=controller, daemon=True)
    thread.start()
    result = release_canary(settings, ref=staged, spec=RolloutSpec(), actor="p", timeout_s=20)
    thread.join(5)
    assert seen["args_at_start"][:3] == ["serve", "--version", "2"]
    assert (result.outcome, result.production_after, result.state.phase) == (
        "promoted", 2, Phase.SUCCEEDED
    )  # fmt: skip
    assert not api_server.patches(CANARY_PATH)
    with Registry.open(settings) as registry:
        assert [e.action for e in registry.history("metarec")][-1] is Action.PROMOTE


def test_cli_deploys_a_version_and_says_what_it_set(
    api_server, tmp_path, staged, kubeconfig, capsys, monkeypatch
):
    from metarec.cli.main import run

    monkeypatch.delenv("METAREC_HOME", raising=False)  # the config file's home is the registry's
    settings = deploy_settings(tmp_path, engine="flagger")
    config = tmp_path / "metarec.yaml"
    config.write_text(json.dumps(settings.model_dump(mode="json", include={"home", "rollout"})))
    assert run(["--config", str(config), "rollout", "deploy", "v2"]) == 0
    assert run(["--config", str(config), "rollout", "deploy", "2"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert f"metarec:v2 set on Deployment {NS}/{DEPLOYMENT}: serve --version 2 --port 3000" in out
    assert f"metarec:v2 already set on Deployment {NS}/{DEPLOYMENT}" in out
    assert f"metadata.version metarec:v2 set on the webhooks of Canary {NS}/{CANARY}" in out
    assert len(api_server.patches(DEPLOYMENT_PATH)) == len(api_server.patches(CANARY_PATH)) == 1

    config.write_text(json.dumps({"home": str(tmp_path / "home")}))
    assert run(["--config", str(config), "rollout", "deploy", "2"]) == 1
    assert "METAREC_ROLLOUT__DEPLOY__KIND=kubernetes" in capsys.readouterr().err
