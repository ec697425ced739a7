"""A kubelet-less cluster: the chart's rendered workloads run as local processes.

What a kubelet would do for one pod, reduced to what the tests need: resolve each container's
environment from the rendered ConfigMaps and Secrets plus the Secrets that exist in the cluster
before the install (``env`` with ``value``/``valueFrom`` and ``envFrom``, ``$(VAR)`` references
expanded), then run the init containers one after the other and the container with that
environment only: nothing of the test process's environment leaks in besides ``PATH``.
The image's entrypoints (``metarec``, ``feast``) are this venv's, the args are the rendered ones.

Batch pods (Jobs, CronJobs) run to completion (:func:`run_pod`). A Deployment's pod is a
long-running process group (:func:`pod_process`, a context manager that always stops it) on free
local ports (the rendered ones moved through the flag or variable the chart passes them with,
see :func:`move_ports`), whose ``httpGet`` readiness and liveness probes are resolved to them;
:meth:`PodProcess.wait_ready` polls the readinessProbe as the kubelet does and fails with the
process output.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_REF = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")
# The only variables a pod gets from the node rather than from its spec.
_NODE_ENV = ("PATH", "LANG", "LC_ALL")


class PodConfigError(Exception):
    """A container's env names a Secret/ConfigMap or key that does not exist (kubelet:
    CreateContainerConfigError)."""


@dataclass(frozen=True)
class Objects:
    """The ConfigMaps and Secrets of a namespace, by name: rendered ones and pre-existing ones."""

    config_maps: dict[str, dict[str, str]] = field(default_factory=dict)
    secrets: dict[str, dict[str, str]] = field(default_factory=dict)

    @classmethod
    def of(cls, docs: Iterable[Mapping[str, Any]], *, secrets: Mapping[str, Mapping[str, str]]):
        """The rendered ``docs``' ConfigMaps and Secrets, plus ``secrets`` created beforehand."""
        config_maps: dict[str, dict[str, str]] = {}
        found = {name: dict(data) for name, data in secrets.items()}
        for doc in docs:
            name = doc["metadata"]["name"]
            if doc["kind"] == "ConfigMap":
                config_maps[name] = dict(doc.get("data") or {})
            elif doc["kind"] == "Secret":
                data = {k: base64.b64decode(v).decode() for k, v in (doc.get("data") or {}).items()}
                found[name] = {**data, **(doc.get("stringData") or {})}
        return cls(config_maps=config_maps, secrets=found)

    def lookup(self, kind: str, name: str, key: str | None, *, optional: bool = False):
        """One key (or, with ``key`` None, all data) of a ConfigMap or Secret."""
        table = self.secrets if kind == "Secret" else self.config_maps
        if name not in table:
            if optional:
                return None
            raise PodConfigError(f"{kind} {name!r} not found")
        if key is None:
            return table[name]
        if key not in table[name]:
            if optional:
                return None
            raise PodConfigError(f"{kind} {name!r} has no key {key!r}")
        return table[name][key]


def _expand(value: str, env: Mapping[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion: defined variables are replaced, others kept as is."""
    return _REF.sub(lambda m: env.get(m.group(1), m.group(0)), value)


def _value_from(source: Mapping[str, Any], objects: Objects, pod: Mapping[str, str]):
    if "secretKeyRef" in source or "configMapKeyRef" in source:
        kind = "Secret" if "secretKeyRef" in source else "ConfigMap"
        ref = source["secretKeyRef" if kind == "Secret" else "configMapKeyRef"]
        return objects.lookup(kind, ref["name"], ref["key"], optional=ref.get("optional", False))
    if "fieldRef" in source:
        return pod[source["fieldRef"]["fieldPath"]]
    raise PodConfigError(f"unsupported valueFrom {sorted(source)}")


def container_env(
    container: Mapping[str, Any], objects: Objects, *, pod: Mapping[str, str]
) -> dict[str, str]:
    """The environment Kubernetes gives ``container``: ``envFrom`` first, then ``env`` in order.

    Args:
        container: The rendered container.
        objects: ConfigMaps and Secrets of the namespace.
        pod: Values of the ``fieldRef`` paths (``metadata.name``, ``metadata.namespace``…).
    """
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        kind = "Secret" if "secretRef" in source else "ConfigMap"
        ref = source["secretRef" if kind == "Secret" else "configMapRef"]
        data = objects.lookup(kind, ref["name"], None, optional=ref.get("optional", False))
        env.update({f"{source.get('prefix', '')}{k}": v for k, v in (data or {}).items()})
    for item in container.get("env", []):
        if "valueFrom" in item:
            value = _value_from(item["valueFrom"], objects, pod)
            if value is not None:
                env[item["name"]] = value
        else:
            env[item["name"]] = _expand(str(item.get("value", "")), env)
    return env


@dataclass(frozen=True)
class Step:
    """One container of a pod, run to completion."""

    name: str
    argv: list[str]
    returncode: int
    output: str


def local_argv(container: Mapping[str, Any]) -> list[str]:
    """The container's command and args, the image's entrypoints (``metarec``, ``feast``: the
    console scripts of its environment) taken from this venv."""
    argv = [*container.get("command", []), *container.get("args", [])]
    if argv and "/" not in argv[0] and (Path(sys.prefix) / "bin" / argv[0]).is_file():
        argv[0] = str(Path(sys.prefix) / "bin" / argv[0])
    return argv


def run_pod(
    pod_spec: Mapping[str, Any],
    objects: Objects,
    *,
    name: str,
    namespace: str,
    cwd: Path,
    timeout_s: float = 600,
) -> list[Step]:
    """Run a batch pod: its init containers in order, then its container; stop at a failure.

    Returns:
        The steps that ran, each with its exit status and output.
    """
    fields = {"metadata.name": name, "metadata.namespace": namespace, "status.podIP": "127.0.0.1"}
    node = {k: os.environ[k] for k in _NODE_ENV if k in os.environ}
    steps: list[Step] = []
    for container in [*pod_spec.get("initContainers", []), *pod_spec["containers"]]:
        env = {**node, **container_env(container, objects, pod=fields)}
        argv = local_argv(container)
        proc = subprocess.run(
            argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout_s
        )
        steps.append(Step(container["name"], argv, proc.returncode, proc.stdout + proc.stderr))
        if proc.returncode != 0:
            break
    return steps


def job_pod_spec(doc: Mapping[str, Any]) -> dict[str, Any]:
    """The pod spec of a Job or a CronJob's job template."""
    spec = doc["spec"]
    if doc["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    return spec["template"]["spec"]


# --- Long-running pods (Deployments) -------------------------------------------------------

_PORT_FLAG = re.compile(r"^--?[A-Za-z0-9-]*port$")


class PodStartError(Exception):
    """A long-running pod exited, or did not answer its readiness probe in time (kubelet: the
    pod stays unready / CrashLoopBackOff); the message carries the process output."""


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def move_ports(argv: list[str], env: dict[str, str], ports: Mapping[int, int]) -> list[str]:
    """``argv`` and ``env`` (in place) with each container port replaced by its local port.

    A kubelet gives every pod its own network namespace, so every pod may listen on the
    rendered port; local processes share one, and other tests may hold that port. The harness
    therefore moves each listen port through the same option the chart passes it with: the value
    of a ``--…port`` flag of the args (``--port 8000``, ``--health-port=8081``) or of a
    ``…PORT`` variable of the env. A containerPort passed in neither way cannot be moved.

    Raises:
        PodConfigError: A containerPort appears in neither the args nor the env.
    """
    out, moved = list(argv), set()
    for i, arg in enumerate(out):
        flag, eq, value = arg.partition("=")
        if eq and _PORT_FLAG.match(flag) and value.isdigit() and int(value) in ports:
            out[i] = f"{flag}={ports[int(value)]}"
            moved.add(int(value))
        elif i and _PORT_FLAG.match(out[i - 1]) and arg.isdigit() and int(arg) in ports:
            out[i] = str(ports[int(arg)])
            moved.add(int(arg))
    for name, value in env.items():
        if name.upper().endswith("PORT") and value.isdigit() and int(value) in ports:
            env[name] = str(ports[int(value)])
            moved.add(int(value))
    if missing := sorted(set(ports) - moved):
        raise PodConfigError(
            f"containerPort(s) {missing} are passed by no --…port flag nor …PORT variable: "
            "the harness cannot give the process a free port"
        )
    return out


@dataclass(frozen=True)
class HttpProbe:
    """An ``httpGet`` probe resolved to this machine (``port`` is the local port)."""

    kind: str
    path: str
    port: int

    def get(self, *, timeout_s: float = 5.0) -> tuple[int, str]:
        """``GET`` the probe once: (status, body); status 0 when nothing answers."""
        url = f"http://127.0.0.1:{self.port}{self.path}"
        try:
            with urllib.request.urlopen(url, timeout=timeout_s) as response:
                return response.status, response.read().decode(errors="replace")
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(errors="replace")
        except (urllib.error.URLError, OSError) as exc:
            return 0, str(exc)


@dataclass
class PodProcess:
    """One Deployment's pod running as a local process group (its only long-running container).

    Use it as a context manager: the process is started on entry and always stopped on exit.
    """

    name: str
    argv: list[str]
    env: dict[str, str]
    ports: dict[str, int]
    probes: dict[str, HttpProbe]
    cwd: Path
    log: Path
    process: subprocess.Popen[bytes] | None = None
    launched_at: float = 0.0

    def start(self) -> PodProcess:
        """Launch the process (its output goes to ``log``); returns at once.

        Raises:
            RuntimeError: It is running already (a second launch would leak the first).
        """
        if self.process is not None and self.process.poll() is None:
            raise RuntimeError(f"{self.name} is running already: use `with pod:` or start()")
        self.launched_at = time.monotonic()
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=self.cwd,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def output(self, *, tail: int = 6000) -> str:
        """The last ``tail`` characters the process wrote."""
        text = self.log.read_text(errors="replace") if self.log.is_file() else ""
        return text[-tail:]

    def url(self, port: str | int) -> str:
        """``http://127.0.0.1:<local port>`` of a container port (by name or number)."""
        return f"http://127.0.0.1:{self.ports[str(port)]}"

    def wait_ready(self, *, timeout_s: float) -> float:
        """Poll the readinessProbe until it answers 200 (``timeout_s`` after the launch).

        Returns:
            The seconds from the launch to the first 200.

        Raises:
            PodStartError: The process exited or the probe did not answer 200 in time (its
                last answer and the process output in the message).
        """
        assert self.process is not None, "start() first"
        if "readiness" not in self.probes:
            raise PodStartError(f"{self.name} has no readinessProbe: nothing says it is ready")
        probe, started = self.probes["readiness"], self.launched_at
        status, body = 0, ""
        restarted = False
        while time.monotonic() - started < timeout_s:
            if self.process.poll() is not None and not restarted and self._port_taken():
                # Another process took the free port between its pick and the bind (local
                # processes share one network namespace): restart once on fresh ports, as a
                # kubelet restarts a crashed container.
                restarted, probe = True, self._restart_on_fresh_ports("readiness")
                continue
            if self.process.poll() is not None:
                raise PodStartError(
                    f"{self.name} exited with code {self.process.returncode} before "
                    f"{probe.path} answered 200:\n{self.output()}"
                )
            status, body = probe.get(timeout_s=2)
            if status == 200:
                return time.monotonic() - started
            time.sleep(0.25)
        raise PodStartError(
            f"{self.name}: readinessProbe GET {probe.path} did not answer 200 within "
            f"{timeout_s:.0f} s (last: {status} {body[:300]!r}):\n{self.output()}"
        )

    def _port_taken(self) -> bool:
        return "Address already in use" in self.output()

    def _restart_on_fresh_ports(self, probe_kind: str) -> HttpProbe:
        """Move every local port to a fresh free one and start the process again."""
        fresh = {port: free_port() for port in set(self.ports.values())}
        self.argv = move_ports(self.argv, self.env, fresh)
        self.ports = {name: fresh[port] for name, port in self.ports.items()}
        self.probes = {
            kind: HttpProbe(kind=probe.kind, path=probe.path, port=fresh[probe.port])
            for kind, probe in self.probes.items()
        }
        launched = self.launched_at
        self.start()
        self.launched_at = launched  # the readiness deadline still counts from the first launch
        return self.probes[probe_kind]

    def terminate(self) -> None:
        """SIGTERM the process group, as the kubelet does (returns at once)."""
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)

    def stop(self, *, grace_s: float = 10.0) -> None:
        """SIGTERM the process group, SIGKILL it after ``grace_s``; wait for the exit."""
        if self.process is None or self.process.poll() is not None:
            return
        self.terminate()
        try:
            self.process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=grace_s)

    def __enter__(self) -> PodProcess:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def stopping(pods: Iterable[PodProcess], *, grace_s: float = 10.0) -> Iterator[None]:
    """On exit, stop every started pod of ``pods``: all SIGTERMed at once, then each awaited,
    SIGKILLed when still running ``grace_s`` after (the pods' grace periods run together)."""
    group = list(pods)
    try:
        yield
    finally:
        for pod in group:
            pod.terminate()
        for pod in group:
            pod.stop(grace_s=grace_s)


def _http_probes(container: Mapping[str, Any], ports: Mapping[str, int]) -> dict[str, HttpProbe]:
    probes = {}
    for kind in ("readiness", "liveness"):
        spec = container.get(f"{kind}Probe")
        if spec is None:
            continue
        if "httpGet" not in spec:
            raise PodConfigError(f"{kind}Probe of {container['name']!r} is not an httpGet probe")
        get = spec["httpGet"]
        probes[kind] = HttpProbe(kind, get.get("path", "/"), ports[str(get["port"])])
    return probes


def pod_process(
    pod_spec: Mapping[str, Any],
    objects: Objects,
    *,
    name: str,
    namespace: str,
    cwd: Path,
    node_env: Mapping[str, str] | None = None,
) -> PodProcess:
    """The pod of a Deployment as a :class:`PodProcess` (not started), on free local ports.

    Args:
        pod_spec: The Deployment's ``spec.template.spec`` (one container, no init containers).
        objects: ConfigMaps and Secrets of the namespace.
        name: The pod's name (``metadata.name``; also names the log file in ``cwd``).
        namespace: The pod's namespace.
        cwd: Working directory of the process.
        node_env: What the node adds besides ``PATH`` (e.g. ``KUBECONFIG`` where a kubelet
            would mount the service-account token).

    Raises:
        PodConfigError: The env names a missing Secret/ConfigMap key, a port cannot be moved,
            a probe is not ``httpGet``, or the pod has init containers or several containers.
    """
    if pod_spec.get("initContainers") or len(pod_spec["containers"]) != 1:
        raise PodConfigError(f"{name}: the harness runs one container and no init containers")
    (container,) = pod_spec["containers"]
    fields = {"metadata.name": name, "metadata.namespace": namespace, "status.podIP": "127.0.0.1"}
    node = {k: os.environ[k] for k in _NODE_ENV if k in os.environ}
    env = {**node, **(node_env or {}), **container_env(container, objects, pod=fields)}
    declared = container.get("ports", [])
    local = {int(p["containerPort"]): free_port() for p in declared}
    argv = move_ports(local_argv(container), env, local)
    ports = {str(p["containerPort"]): local[int(p["containerPort"])] for p in declared}
    ports.update({p["name"]: local[int(p["containerPort"])] for p in declared if "name" in p})
    probes = _http_probes(container, ports)
    return PodProcess(name, argv, env, ports, probes, cwd, cwd / f"{name}.log")


def deployment_pod_spec(doc: Mapping[str, Any]) -> dict[str, Any]:
    """The pod spec of a Deployment."""
    return doc["spec"]["template"]["spec"]


def api_access_env(pod_spec: Mapping[str, Any], *, kubeconfig: Path) -> dict[str, str]:
    """What stands in for the service-account token a kubelet mounts into a pod.

    Only a pod with ``automountServiceAccountToken`` (default true) gets API access:
    ``KUBECONFIG`` naming ``kubeconfig`` (the Kubernetes client's fallback outside a pod).
    """
    if not pod_spec.get("automountServiceAccountToken", True):
        return {}
    return {"KUBECONFIG": str(kubeconfig)}


def with_home(spec: Mapping[str, Any], mount: str, home: Path) -> dict[str, Any]:
    """The pod spec with every env value under ``mount`` moved under ``home``: the pod's own
    volume (an ``emptyDir``) instead of the folder the harness values share between pods."""
    spec = copy.deepcopy(dict(spec))
    for container in [*spec.get("initContainers", []), *spec["containers"]]:
        for item in container.get("env", []):
            value = item.get("value")
            if isinstance(value, str) and (value == mount or value.startswith(mount + "/")):
                item["value"] = str(home) + value[len(mount) :]
    home.mkdir(parents=True, exist_ok=True)
    return spec
