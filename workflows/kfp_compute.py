"""Render MetaRec's training compute spec onto a KFP v2 pipeline task."""

from __future__ import annotations

from typing import Any

from metarec.compute import ComputeSpec


def apply_compute(task: Any, compute: ComputeSpec) -> Any:
    """Set CPU/memory, the accelerator, tolerations and node selector on a KFP ``PipelineTask``.

    Args:
        task: The ``kfp.dsl.PipelineTask`` of the training step.
        compute: The training compute spec.

    Returns:
        The same task, for chaining.
    """
    from kfp import kubernetes

    task.set_cpu_request(compute.cpu_request).set_cpu_limit(compute.cpu_limit)
    task.set_memory_request(compute.memory_request).set_memory_limit(compute.memory_limit)
    if compute.gpu_count:
        task.set_accelerator_type(compute.gpu_resource)
        task.set_accelerator_limit(compute.gpu_count)
    for toleration in compute.effective_tolerations():
        kubernetes.add_toleration(
            task,
            key=toleration.key,
            operator=toleration.operator,
            value=toleration.value,
            effect=toleration.effect,
        )
    for key, value in compute.effective_node_selector().items():
        kubernetes.add_node_selector(task, label_key=key, label_value=value)
    return task
