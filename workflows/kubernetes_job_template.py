"""The Prefect Kubernetes work-pool base job template, carrying MetaRec's training compute spec.

Starting from prefect-kubernetes' own default template, the CPU/memory variables get the spec's
values as defaults, and three variables are added and wired into the Job manifest:
``gpu_limit`` (into the container's ``limits[<gpu resource>]``, which is where GPUs must be for
the device plugin — leaving them out of the manifest is the classic way GPU requests get lost),
``tolerations`` and ``node_selector`` (into the pod spec). Deployments can override any of them
with ``job_variables``.
"""

from __future__ import annotations

import copy
from typing import Any

from metarec.compute import ComputeSpec


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
