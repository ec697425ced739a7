"""Render the MetaRec Helm chart with the real `helm` binary and hand the manifests to tests.

`helm` is taken from PATH or the venv (where `make setup` puts it with scripts/fetch-helm.sh);
when neither has it, the fixture runs that script once, and skips the chart tests with the
reason only if helm truly cannot be obtained.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "metarec"
GPU_VALUES = REPO / "helm" / "values-gpu-production.yaml"
FETCH_HELM = REPO / "scripts" / "fetch-helm.sh"
RELEASE = "mr"
NAMESPACE = "metarec"
KUBERNETES_VERSIONS = ("1.30", "1.33")
# helm/values-gpu-production.yaml runs canaries with Flagger (tests/helm/test_flagger.py). These
# --set values turn it back to the embedded engine at the same scale: a chart canary (version 7)
# at 10 %, the rollout controller, the HTTPRoute and a ServiceMonitor.
GPU_EMBEDDED = (
    "rollout.engine=embedded",
    "monitoring.serving.kind=ServiceMonitor",
    "serving.canary.enabled=true",
    "serving.canary.version=7",
    "route.weights.production=90",
    "route.weights.canary=10",
)


def _candidates() -> Iterator[Path]:
    on_path = shutil.which("helm")
    if on_path:
        yield Path(on_path)
    yield Path(sys.prefix) / "bin" / "helm"
    yield REPO / ".venv" / "bin" / "helm"


@cache
def _find_helm() -> tuple[Path | None, str]:
    for candidate in _candidates():
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate, ""
    dest = Path(sys.prefix) / "bin"
    try:
        proc = subprocess.run(
            ["bash", str(FETCH_HELM), str(dest)],
            capture_output=True,
            text=True,
            timeout=600,
            env={**os.environ, "PYTHON": sys.executable},
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"helm is not on PATH and {FETCH_HELM.name} failed: {exc}"
    helm = dest / "helm"
    if proc.returncode == 0 and helm.is_file():
        return helm, ""
    return None, (
        f"helm is not on PATH nor in {dest}, and {FETCH_HELM.name} could not fetch it "
        f"(exit {proc.returncode}): {proc.stderr.strip()[-500:]}"
    )


@pytest.fixture(scope="session")
def helm() -> Path:
    """Path of a working `helm` binary (skips with the reason when none can be obtained)."""
    path, reason = _find_helm()
    if path is None:
        print(f"SKIP chart tests: {reason}", file=sys.stderr)
        pytest.skip(reason)
    return path


class RenderError(Exception):
    """`helm template` failed; the message is helm's stderr."""


@dataclass(frozen=True)
class Manifests:
    """The documents `helm template` rendered, with lookups by kind and name."""

    docs: tuple[dict[str, Any], ...]
    text: str

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [d for d in self.docs if d["kind"] == kind]

    def get(self, kind: str, name: str) -> dict[str, Any]:
        for doc in self.of_kind(kind):
            if doc["metadata"]["name"] == name:
                return doc
        raise KeyError(f"no {kind} named {name}; have {sorted(self.names(kind))}")

    def names(self, kind: str) -> set[str]:
        return {d["metadata"]["name"] for d in self.of_kind(kind)}

    def pod_specs(self) -> list[tuple[str, dict[str, Any]]]:
        """(workload name, pod spec) of every Deployment, Job and CronJob."""
        out = []
        for doc in self.docs:
            spec = doc.get("spec", {})
            if doc["kind"] in ("Deployment", "Job"):
                out.append((f"{doc['kind']}/{doc['metadata']['name']}", spec["template"]["spec"]))
            elif doc["kind"] == "CronJob":
                pod = spec["jobTemplate"]["spec"]["template"]["spec"]
                out.append((f"CronJob/{doc['metadata']['name']}", pod))
        return out

    def containers(self) -> list[tuple[str, dict[str, Any]]]:
        """(workload/container, container) of every container of every workload."""
        return [
            (f"{workload}/{c['name']}", c)
            for workload, pod in self.pod_specs()
            for c in [*pod.get("initContainers", []), *pod["containers"]]
        ]


def run_helm(helm: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(helm), *args], capture_output=True, text=True, timeout=120)


@cache
def _render(helm: Path, values_files: tuple[str, ...], sets: tuple[str, ...]) -> Manifests:
    args = ["template", RELEASE, str(CHART), "--namespace", NAMESPACE]
    for f in values_files:
        args += ["-f", f]
    for s in sets:
        args += ["--set", s]
    proc = run_helm(helm, *args)
    if proc.returncode != 0:
        raise RenderError(proc.stderr.strip())
    docs = tuple(d for d in yaml.safe_load_all(proc.stdout) if d)
    return Manifests(docs=docs, text=proc.stdout)


class Chart:
    """The chart under test: render it, lint it, name its objects."""

    RenderError = RenderError
    release = RELEASE
    namespace = NAMESPACE
    path = CHART
    gpu_values = GPU_VALUES
    gpu_embedded = GPU_EMBEDDED
    kubernetes_versions = KUBERNETES_VERSIONS

    def __init__(self, helm: Path) -> None:
        self.helm = helm

    def render(
        self, *values_files: Path | str, sets: tuple[str, ...] | list[str] = ()
    ) -> Manifests:
        """`helm template` with values files and --set values; RenderError on failure."""
        return _render(self.helm, tuple(str(f) for f in values_files), tuple(sets))

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run_helm(self.helm, *args)

    @staticmethod
    def name(component: str = "") -> str:
        """Resource name of a component: <release>-metarec[-component]."""
        base = f"{RELEASE}-metarec"
        return f"{base}-{component}" if component else base


@pytest.fixture(scope="session")
def chart(helm: Path) -> Chart:
    return Chart(helm)


@pytest.fixture(scope="session")
def default(chart: Chart) -> Manifests:
    """The chart rendered with its default values."""
    return chart.render()


@pytest.fixture(scope="session")
def gpu(chart: Chart) -> Manifests:
    """The chart rendered with helm/values-gpu-production.yaml (GPU training, Flagger canaries)."""
    return chart.render(GPU_VALUES)


@pytest.fixture(scope="session")
def gpu_single_node(chart: Chart) -> Manifests:
    """helm/values-gpu-production.yaml on one node: the plain training Job, not a TrainJob."""
    return chart.render(GPU_VALUES, sets=["training.compute.nodes=1"])


@pytest.fixture(scope="session")
def gpu_embedded(chart: Chart) -> Manifests:
    """helm/values-gpu-production.yaml with the embedded engine (chart canary at 10 %)."""
    return chart.render(GPU_VALUES, sets=GPU_EMBEDDED)


@pytest.fixture(scope="session", params=["default", "gpu-production-embedded"])
def manifests(request: pytest.FixtureRequest, chart: Chart) -> Manifests:
    """Both value sets, one after the other (GPU production with the embedded engine)."""
    if request.param == "default":
        return chart.render()
    return chart.render(GPU_VALUES, sets=GPU_EMBEDDED)
