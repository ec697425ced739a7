"""A kubelet-less cluster: the chart's rendered workloads run as local processes.

What a kubelet would do for one pod, reduced to what the tests need: resolve each container's
environment from the rendered ConfigMaps and Secrets plus the Secrets that exist in the cluster
before the install (``env`` with ``value``/``valueFrom`` and ``envFrom``, ``$(VAR)`` references
expanded), then run the init containers one after the other and the container with that
environment only: nothing of the test process's environment leaks in besides ``PATH``.
The image's ``metarec`` entrypoint is this checkout's (``<venv>/bin/metarec``), the args are the
rendered ones.
"""

from __future__ import annotations

import base64
import os
import re
import subprocess
import sys
from collections.abc import Iterable, Mapping
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
    """The container's command and args, with the image's ``metarec`` taken from this venv."""
    argv = [*container.get("command", []), *container.get("args", [])]
    if argv and argv[0] == "metarec":
        argv[0] = str(Path(sys.prefix) / "bin" / "metarec")
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
