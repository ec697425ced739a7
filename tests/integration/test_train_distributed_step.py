"""The multi-node training step against the real Kubernetes client and a tiny local API server.

The server (the approach of test_deploy_step.py) stores the custom objects the step creates
(POST, 409 for a name it has) and answers GET; a scripted "controller" moves a job through its
conditions as it is read, and on success writes the artifact at the run's URI, as rank 0's
upload would. The step (``metarec.components.train_distributed``) reaches it through an
``ApiClient`` of the server's address.
"""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from kubeflow_trainer_api.models import TrainerV1alpha1TrainJob
from kubernetes import client
from metarec.components.train_distributed import train_distributed
from metarec.compute import ComputeSpec
from metarec.errors import DistributedTrainingError
from metarec.testing.registry import write_fixture_artifact

pytestmark = pytest.mark.integration

NS = "ml"
TRAINJOBS = f"/apis/trainer.kubeflow.org/v1alpha1/namespaces/{NS}/trainjobs"
PYTORCHJOBS = f"/apis/kubeflow.org/v1/namespaces/{NS}/pytorchjobs"
RUNNING = [{"type": "Created", "status": "True", "reason": "JobsCreated"}]


class FakeAPIServer:
    """Stores custom objects; ``script`` gives the conditions of each successive read."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.requests: list[dict[str, Any]] = []
        self.script: list[list[dict[str, Any]]] = []
        self.on_done: Any = None  # called when a job reaches a success condition
        self.forbidden = False
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

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                fake.requests.append({"method": "POST", "path": self.path, "body": body})
                self._send(*fake.create(self.path, body))

            def do_GET(self) -> None:
                fake.requests.append({"method": "GET", "path": self.path})
                self._send(*fake.read(self.path))

            def do_DELETE(self) -> None:
                fake.requests.append({"method": "DELETE", "path": self.path})
                self._send(405, {"kind": "Status", "code": 405})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

    def create(self, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if self.forbidden:
            return 403, {"kind": "Status", "code": 403, "reason": "Forbidden"}
        key = f"{path}/{body['metadata']['name']}"
        if key in self.objects:
            return 409, {"kind": "Status", "code": 409, "reason": "AlreadyExists"}
        self.objects[key] = copy.deepcopy(body)
        return 201, body

    def read(self, path: str) -> tuple[int, dict[str, Any]]:
        if path not in self.objects:
            return 404, {"kind": "Status", "code": 404, "reason": "NotFound"}
        stored = self.objects[path]
        if self.script:
            stored["status"] = {"conditions": self.script.pop(0)}
            done = {"Complete", "Succeeded"}
            if self.on_done and any(c["type"] in done for c in stored["status"]["conditions"]):
                self.on_done()
        return 200, copy.deepcopy(stored)

    def methods(self) -> list[str]:
        return [r["method"] for r in self.requests]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def api_server() -> Iterator[FakeAPIServer]:
    server = FakeAPIServer()
    yield server
    server.close()


def _request(engine: str = "trainer", **overrides: Any) -> dict[str, Any]:
    return {
        "image": "registry.example/metarec:1",
        "compute": ComputeSpec(nodes=2, gpu_count=1).model_dump(mode="json"),
        "options": {"engine": engine},
        "namespace": NS,
        "poll_s": 0.01,
        "timeout_s": 10,  # a wrong outcome reading fails here instead of waiting a day
        **overrides,
    }


def _train(api_server: FakeAPIServer, tmp_path: Path, request: dict[str, Any]) -> Any:
    return train_distributed(
        training_set="s3://acme/ts.parquet",
        out=(tmp_path / "store" / "artifact").as_uri(),
        request=request,
        home=str(tmp_path / "home"),
        api_client=client.ApiClient(client.Configuration(host=api_server.url)),
    )


def test_a_completed_trainjob_returns_the_artifact_uri(api_server, tmp_path):
    artifact = tmp_path / "store" / "artifact"
    api_server.on_done = lambda: write_fixture_artifact(artifact, seed=3)  # rank 0's upload
    api_server.script = [[], RUNNING, [*RUNNING, {"type": "Complete", "status": "True"}]]
    out = _train(api_server, tmp_path, _request())
    assert out.artifact == artifact.as_uri()
    assert out.validation_result_id == "validation-3"
    assert (out.job_kind, out.namespace, out.created) == ("TrainJob", NS, True)
    (post,) = [r for r in api_server.requests if r["method"] == "POST"]
    assert post["path"] == TRAINJOBS
    TrainerV1alpha1TrainJob.from_dict(post["body"])
    assert post["body"]["spec"]["trainer"]["command"][-2:] == ["--out", artifact.as_uri()]
    assert api_server.methods().count("GET") == 3
    # A retried step finds its job (409 on create) and returns the same artifact.
    again = _train(api_server, tmp_path, _request())
    assert (again.artifact, again.job_name, again.created) == (out.artifact, out.job_name, False)
    assert "DELETE" not in api_server.methods()


def test_a_failed_trainjob_fails_the_step_with_its_reason(api_server, tmp_path):
    failed = {"type": "Failed", "status": "True", "reason": "JobFailed",
              "message": "jobset node-0 failed: OOMKilled"}  # fmt: skip
    api_server.script = [RUNNING, [*RUNNING, failed]]
    with pytest.raises(DistributedTrainingError, match="failed: JobFailed: jobset node-0") as info:
        _train(api_server, tmp_path, _request())
    assert f"TrainJob {NS}/metarec-train-" in str(info.value)
    assert "DELETE" not in api_server.methods()


def test_a_job_that_does_not_finish_in_time_fails_naming_it(api_server, tmp_path):
    api_server.script = [RUNNING] * 1000
    with pytest.raises(DistributedTrainingError, match="did not finish within") as info:
        _train(api_server, tmp_path, _request(timeout_s=0.2))
    (name,) = [key.rsplit("/", 1)[1] for key in api_server.objects]
    assert f"TrainJob {NS}/{name} did not finish" in str(info.value)
    assert "DELETE" not in api_server.methods()


def test_success_without_an_artifact_at_the_uri_fails_the_step(api_server, tmp_path):
    api_server.script = [[{"type": "Complete", "status": "True"}]]
    with pytest.raises(DistributedTrainingError, match="succeeded but left no model card"):
        _train(api_server, tmp_path, _request())


def test_a_pytorchjob_runs_on_the_training_operator(api_server, tmp_path):
    artifact = tmp_path / "store" / "artifact"
    api_server.on_done = lambda: write_fixture_artifact(artifact, seed=4)
    api_server.script = [[{"type": "Running", "status": "True"}],
                         [{"type": "Succeeded", "status": "True"}]]  # fmt: skip
    out = _train(api_server, tmp_path, _request("training-operator"))
    assert (out.job_kind, out.artifact) == ("PyTorchJob", artifact.as_uri())
    (post,) = [r for r in api_server.requests if r["method"] == "POST"]
    assert post["path"] == PYTORCHJOBS


def test_no_permission_to_create_names_the_role_to_grant(api_server, tmp_path):
    api_server.forbidden = True
    with pytest.raises(DistributedTrainingError, match=r"create and get trainjobs\.trainer"):
        _train(api_server, tmp_path, _request())
