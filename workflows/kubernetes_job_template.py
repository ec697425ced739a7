"""The Prefect Kubernetes work-pool base job template, carrying MetaRec's training compute spec.

Starting from prefect-kubernetes' own default template, the CPU/memory variables get the spec's
values as defaults, and three variables are added and wired into the Job manifest:
``gpu_limit`` (into the container's ``limits[<gpu resource>]``, which is where GPUs must be for
the device plugin — leaving them out of the manifest is the classic way GPU requests get lost),
``tolerations`` and ``node_selector`` (into the pod spec). Deployments can override any of them
with ``job_variables``.

The Helm chart renders the same compute parts into its own, richer template (ConfigMap
``<release>-metarec-prefect-job-template``: MetaRec's env with Secrets by reference, pod
hardening, writable volumes, service account). That ConfigMap is the pool's template on a cluster
installed with the chart; :func:`load_base_job_template` reads it, and :func:`compute_drift`
says where a pool's template and the settings' compute spec disagree.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from metarec.compute import ComputeSpec
from metarec.errors import DataFormatError, DataSourceNotFoundError


def training_base_job_template(compute: ComputeSpec, *, image: str) -> dict[str, Any]:
    """Return a base job template for ``prefect work-pool create --base-job-template``.

    Args:
        compute: The training compute spec.
        image: The platform image the flow runs in.

    Returns:
        The template (``job_configuration`` and ``variables``), JSON-able.
    """
    from prefect_kubernetes.worker import KubernetesWorker

    template = copy.deepcopy(KubernetesWorker.get_default_base_job_template())
    variables = template["variables"]["properties"]
    variables["image"]["default"] = image
    for name in ("cpu_request", "cpu_limit", "memory_request", "memory_limit"):
        variables[name]["default"] = getattr(compute, name)
    variables["tolerations"] = {
        "title": "Tolerations",
        "description": "Pod tolerations (e.g. for tainted GPU nodes).",
        "type": "array",
        "items": {"type": "object"},
        "default": [t.to_kubernetes() for t in compute.effective_tolerations()],
    }
    variables["node_selector"] = {
        "title": "Node selector",
        "description": "Pod node selector (e.g. the GPU model label).",
        "type": "object",
        "additionalProperties": {"type": "string"},
        "default": compute.effective_node_selector(),
    }
    pod = template["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]
    pod["tolerations"] = "{{ tolerations }}"
    pod["nodeSelector"] = "{{ node_selector }}"
    if compute.gpu_count:
        variables["gpu_limit"] = {
            "title": "GPU limit",
            "description": f"Number of {compute.gpu_resource} for the training container.",
            "type": "integer",
            "minimum": 0,
            "default": compute.gpu_count,
        }
        limits = pod["containers"][0]["resources"]["limits"]
        limits[compute.gpu_resource] = "{{ gpu_limit }}"
    return template


# The parts of a base job template that come from the compute spec: variable defaults, and where
# the manifest wires them. The chart's template and the built-in one must agree on these.
COMPUTE_VARIABLES = (
    "cpu_request",
    "cpu_limit",
    "memory_request",
    "memory_limit",
    "gpu_limit",
    "tolerations",
    "node_selector",
)
CONFIGMAP_KEY = "base-job-template.json"
_TEMPLATE_FIX = (
    "pass the chart's ConfigMap (`kubectl get configmap <release>-metarec-prefect-job-template "
    "-o yaml`) or its base-job-template.json key, a JSON object with job_configuration and "
    "variables."
)


def load_base_job_template(path: Path) -> dict[str, Any]:
    """Read a base job template: the JSON itself, or the chart's ConfigMap holding it.

    Args:
        path: A ``base-job-template.json`` file, or the ConfigMap manifest (YAML or JSON) the
            chart renders as ``<release>-metarec-prefect-job-template``.

    Returns:
        The template (``job_configuration`` and ``variables``).

    Raises:
        DataSourceNotFoundError: ``path`` does not exist.
        DataFormatError: It is neither a template nor a ConfigMap holding one.
    """
    import yaml

    if not path.is_file():
        raise DataSourceNotFoundError(path, fix=_TEMPLATE_FIX)
    try:
        document = yaml.safe_load(path.read_text())
        if isinstance(document, dict) and document.get("kind") == "ConfigMap":
            document = json.loads(document.get("data", {}).get(CONFIGMAP_KEY, "null"))
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        raise DataFormatError(
            path, problem=f"not YAML or JSON ({exc}).", fix=_TEMPLATE_FIX
        ) from exc
    if not isinstance(document, dict) or not {"job_configuration", "variables"} <= set(document):
        raise DataFormatError(
            path,
            problem="not a Prefect base job template (or a ConfigMap holding one).",
            fix=_TEMPLATE_FIX,
        )
    return document


def compute_drift(template: dict[str, Any], reference: dict[str, Any]) -> list[str]:
    """Where ``template`` disagrees with ``reference`` on the compute parts.

    Compared: the defaults of :data:`COMPUTE_VARIABLES` and the training container's
    ``resources`` plus the pod's ``tolerations`` and ``nodeSelector`` as the manifest wires them.

    Returns:
        One line per difference (``gpu_limit default: pool 1, settings 2``); empty when they agree.
    """
    ours, theirs = _variable_defaults(template), _variable_defaults(reference)
    drift = [
        f"{name} default: pool {ours.get(name)!r}, settings {theirs.get(name)!r}"
        for name in COMPUTE_VARIABLES
        if ours.get(name) != theirs.get(name)
    ]
    for part, pool_value, settings_value in zip(
        ("resources", "tolerations", "nodeSelector"),
        _wiring(template),
        _wiring(reference),
        strict=True,
    ):
        if pool_value != settings_value:
            drift.append(f"job manifest {part}: pool {pool_value!r}, settings {settings_value!r}")
    return drift


def _variable_defaults(template: dict[str, Any]) -> dict[str, Any]:
    properties = template.get("variables", {}).get("properties", {})
    return {
        name: properties[name].get("default") for name in COMPUTE_VARIABLES if name in properties
    }


def _wiring(template: dict[str, Any]) -> tuple[Any, Any, Any]:
    manifest = template.get("job_configuration", {}).get("job_manifest", {})
    pod = manifest.get("spec", {}).get("template", {}).get("spec", {})
    containers = pod.get("containers") or [{}]
    return containers[0].get("resources"), pod.get("tolerations"), pod.get("nodeSelector")
