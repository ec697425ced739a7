"""The harness resolves a container's env as Kubernetes does, and runs a long-running pod on a
free port until its readiness probe answers (local processes only, no services needed)."""

from __future__ import annotations

import base64
import re
import socket
import sys
import time

import pytest

# Loaded from its file by tests/cluster/conftest.py (tests/ is not a package).
workloads = sys.modules["metarec_tests_cluster_workloads"]

DOCS = [
    {"kind": "ConfigMap", "metadata": {"name": "cm"}, "data": {"A": "from-cm", "B": "b"}},
    {
        "kind": "Secret",
        "metadata": {"name": "rendered"},
        "data": {"token": base64.b64encode(b"s3cret").decode()},
        "stringData": {"plain": "p"},
    },
]
EXISTING = {"pre": {"url": "postgresql://db"}}
POD = {"metadata.namespace": "ns", "metadata.name": "pod-1"}


def _env(container):
    objects = workloads.Objects.of(DOCS, secrets=EXISTING)
    return workloads.container_env(container, objects, pod=POD)


def test_env_from_then_env_in_order_with_references_and_field_refs():
    env = _env(
        {
            "envFrom": [
                {"configMapRef": {"name": "cm"}},
                {"secretRef": {"name": "pre"}, "prefix": "X_"},
            ],
            "env": [
                {"name": "A", "value": "literal wins over envFrom"},
                {
                    "name": "TOKEN",
                    "valueFrom": {"secretKeyRef": {"name": "rendered", "key": "token"}},
                },
                {
                    "name": "PLAIN",
                    "valueFrom": {"secretKeyRef": {"name": "rendered", "key": "plain"}},
                },
                {"name": "C", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "B"}}},
                {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                {"name": "JOINED", "value": "$(C)-$(NS)-$(UNDEFINED)"},
                {
                    "name": "GONE",
                    "valueFrom": {"secretKeyRef": {"name": "nope", "key": "k", "optional": True}},
                },
            ],
        }
    )
    assert env == {
        "A": "literal wins over envFrom",
        "B": "b",
        "X_url": "postgresql://db",
        "TOKEN": "s3cret",
        "PLAIN": "p",
        "C": "b",
        "NS": "ns",
        "JOINED": "b-ns-$(UNDEFINED)",
    }


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ({"secretKeyRef": {"name": "missing", "key": "k"}}, "Secret 'missing' not found"),
        ({"secretKeyRef": {"name": "pre", "key": "nokey"}}, "Secret 'pre' has no key 'nokey'"),
        ({"configMapKeyRef": {"name": "cm", "key": "Z"}}, "ConfigMap 'cm' has no key 'Z'"),
    ],
)
def test_a_missing_reference_keeps_the_container_from_starting(item, message):
    with pytest.raises(workloads.PodConfigError, match=message):
        _env({"env": [{"name": "V", "valueFrom": item}]})


def test_the_image_entrypoint_is_this_checkouts_metarec():
    argv = workloads.local_argv({"command": ["metarec"], "args": ["features", "materialize"]})
    assert argv[0].endswith("/bin/metarec") and argv[1:] == ["features", "materialize"]


def test_an_image_entrypoint_other_than_metarec_is_this_venvs_too():
    argv = workloads.local_argv({"command": ["feast"], "args": ["serve"]})
    assert argv[0] == f"{sys.prefix}/bin/feast" and argv[1:] == ["serve"]
    assert workloads.local_argv({"command": ["/bin/sh", "-c", "x"]})[0] == "/bin/sh"


def test_listen_ports_move_through_the_flag_or_variable_that_passes_them():
    env = {"METAREC_SERVING__PORT": "3000", "OTHER": "3000"}
    argv = workloads.move_ports(
        ["serve", "--port", "3000", "--health-port=8081", "--workers", "8081"],
        env,
        {3000: 41000, 8081: 41001},
    )
    assert argv == ["serve", "--port", "41000", "--health-port=41001", "--workers", "8081"]
    assert env == {"METAREC_SERVING__PORT": "41000", "OTHER": "3000"}


def test_a_port_passed_by_no_flag_cannot_be_moved():
    with pytest.raises(workloads.PodConfigError, match=r"containerPort\(s\) \[9000\]"):
        workloads.move_ports(["serve", "--workers", "9000"], {}, {9000: 41000})


def test_only_a_pod_that_mounts_its_token_gets_api_access(tmp_path):
    kubeconfig = tmp_path / "kubeconfig"
    assert workloads.api_access_env({}, kubeconfig=kubeconfig) == {"KUBECONFIG": str(kubeconfig)}
    assert (
        workloads.api_access_env({"automountServiceAccountToken": False}, kubeconfig=kubeconfig)
        == {}
    )


# A one-file "image": answers GET /ready with READY_STATUS after printing a line, or exits.
_SERVER = """
import http.server, os, sys
print("starting on", sys.argv[2], flush=True)
if os.environ["MODE"] == "crash":
    sys.exit("boom: no config")
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        ok = self.path in ("/ready", "/live")
        self.send_response(int(os.environ["READY_STATUS"]) if ok else 404)
        self.end_headers()
http.server.HTTPServer(("127.0.0.1", int(sys.argv[2])), H).serve_forever()
"""


def _pod(tmp_path, mode: str, status: str = "200"):
    container = {
        "name": "web",
        "command": [sys.executable, "-c", _SERVER],
        "args": ["--port", "8000"],
        "env": [
            {"name": "MODE", "value": mode},
            {"name": "READY_STATUS", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "A"}}},
        ],
        "ports": [{"name": "http", "containerPort": 8000}],
        "readinessProbe": {"httpGet": {"path": "/ready", "port": "http"}},
        "livenessProbe": {"httpGet": {"path": "/live", "port": 8000}},
    }
    docs = [{"kind": "ConfigMap", "metadata": {"name": "cm"}, "data": {"A": status}}]
    objects = workloads.Objects.of(docs, secrets={})
    return workloads.pod_process(
        {"containers": [container]}, objects, name="web-1", namespace="ns", cwd=tmp_path
    )


def test_a_pod_runs_on_a_free_port_until_its_readiness_probe_answers_and_is_stopped(tmp_path):
    pod = _pod(tmp_path, "serve")
    port = pod.ports["http"]
    assert pod.ports["8000"] == port and pod.argv[-2:] == ["--port", str(port)]
    assert {k: (p.path, p.port) for k, p in pod.probes.items()} == {
        "readiness": ("/ready", port),
        "liveness": ("/live", port),
    }
    with pod:
        assert pod.wait_ready(timeout_s=30) > 0
        assert pod.probes["liveness"].get()[0] == 200
        assert pod.url("http") == f"http://127.0.0.1:{port}"
    assert pod.process.poll() is not None, "the process is stopped on exit"
    assert pod.probes["readiness"].get()[0] == 0
    assert f"starting on {port}" in pod.output()


def test_a_pod_whose_port_was_taken_meanwhile_restarts_once_on_a_fresh_port(tmp_path):
    pod = _pod(tmp_path, "serve")
    taken = pod.ports["http"]
    with socket.socket() as squatter:  # another process took the port after it was picked
        squatter.bind(("127.0.0.1", taken))
        squatter.listen()
        with pod:
            assert pod.wait_ready(timeout_s=30) > 0
            port = pod.ports["http"]
            assert port != taken and pod.argv[-2:] == ["--port", str(port)]
            assert {p.port for p in pod.probes.values()} == {port}
            assert pod.probes["liveness"].get()[0] == 200


def test_a_pod_that_exits_fails_with_its_exit_code_and_output(tmp_path):
    with _pod(tmp_path, "crash") as pod, pytest.raises(workloads.PodStartError) as failed:
        pod.wait_ready(timeout_s=30)
    assert "web-1 exited with code 1 before /ready answered 200" in str(failed.value)
    assert "boom: no config" in str(failed.value)


def test_a_pod_whose_readiness_probe_never_answers_200_times_out_with_its_output(tmp_path):
    with _pod(tmp_path, "serve", status="503") as pod:
        deadline = time.monotonic() + 30
        while pod.probes["liveness"].get()[0] != 503 and time.monotonic() < deadline:
            time.sleep(0.05)  # up (answering 503), on a loaded machine too
        with pytest.raises(workloads.PodStartError) as failed:
            pod.wait_ready(timeout_s=time.monotonic() - pod.launched_at + 0.5)
    message = str(failed.value)
    assert re.search(r"GET /ready did not answer 200 within \d+ s \(last: 503", message), message
    assert "starting on" in message


def test_a_pods_own_home_replaces_the_shared_home_in_its_env(tmp_path):
    spec = {
        "containers": [
            {
                "name": "c",
                "env": [
                    {"name": "METAREC_HOME", "value": "/var/lib/metarec"},
                    {"name": "BENTOML_HOME", "value": "/var/lib/metarec/bentoml"},
                    {"name": "OTHER", "value": "/var/lib/metarecx"},
                    {"name": "S", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
                ],
            }
        ]
    }
    moved = workloads.with_home(spec, "/var/lib/metarec", tmp_path / "own")
    assert [e.get("value") for e in moved["containers"][0]["env"]] == [
        str(tmp_path / "own"),
        str(tmp_path / "own" / "bentoml"),
        "/var/lib/metarecx",
        None,
    ]
    assert spec["containers"][0]["env"][0]["value"] == "/var/lib/metarec", "a copy"
    assert (tmp_path / "own").is_dir()
