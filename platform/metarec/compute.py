"""One typed compute spec for training, rendered into every place a training job is defined.

KFP tasks, Prefect Kubernetes job templates and the Helm training Job all read it, so that a GPU
request means the same thing everywhere. ``nodes`` × ``gpu_count`` (GPUs per node, i.e. per pod)
is the world size: above one process, training runs as a distributed job under ``torchrun``
(:meth:`ComputeSpec.torchrun_command`) instead of one pod whose extra GPUs would sit idle.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

GPU_RESOURCE = "nvidia.com/gpu"


class Toleration(BaseModel):
    """A Kubernetes toleration (the fields Kubernetes accepts, same names)."""

    model_config = ConfigDict(extra="forbid")

    key: str
    operator: Literal["Exists", "Equal"] = "Exists"
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = "NoSchedule"

    def to_kubernetes(self) -> dict[str, str]:
        """The toleration as it appears in a pod spec."""
        return self.model_dump(exclude_none=True)


class ComputeSpec(BaseModel):
    """CPU, memory and GPU of the training step, and where it may be scheduled."""

    model_config = ConfigDict(extra="forbid")

    cpu_request: str = Field(default="2", description="Kubernetes CPU quantity requested.")
    cpu_limit: str = Field(default="4", description="Kubernetes CPU quantity limit.")
    memory_request: str = Field(default="8Gi", description="Memory requested.")
    memory_limit: str = Field(default="16Gi", description="Memory limit.")
    nodes: int = Field(
        default=1, ge=1, description="Training nodes (pods); more than one: distributed training."
    )
    gpu_count: int = Field(
        default=0, ge=0, description="GPUs per node, i.e. per pod (0: CPU training)."
    )
    gpu_resource: str = Field(
        default=GPU_RESOURCE, description="Extended resource name of the GPU (device plugin)."
    )
    gpu_type: str | None = Field(
        default=None,
        description="GPU model for the node selector, e.g. NVIDIA-H100-80GB-HBM3 "
        "(label nvidia.com/gpu.product, set by the NVIDIA GPU feature discovery).",
    )
    gpu_type_label: str = Field(default="nvidia.com/gpu.product")
    tolerations: list[Toleration] = Field(default_factory=list)
    node_selector: dict[str, str] = Field(default_factory=dict)

    def resources(self) -> dict[str, dict[str, str]]:
        """Container ``resources``: requests and limits (GPUs as limits only).

        Kubernetes requires extended resources such as GPUs to be set as limits.
        """
        limits = {"cpu": self.cpu_limit, "memory": self.memory_limit}
        if self.gpu_count:
            limits[self.gpu_resource] = str(self.gpu_count)
        return {
            "requests": {"cpu": self.cpu_request, "memory": self.memory_request},
            "limits": limits,
        }

    def effective_node_selector(self) -> dict[str, str]:
        """The node selector, with the GPU model label when ``gpu_type`` is set."""
        selector = dict(self.node_selector)
        if self.gpu_count and self.gpu_type:
            selector.setdefault(self.gpu_type_label, self.gpu_type)
        return selector

    def effective_tolerations(self) -> list[Toleration]:
        """The tolerations, plus the usual ``nvidia.com/gpu`` taint when GPUs are requested."""
        tolerations = list(self.tolerations)
        if self.gpu_count and not any(t.key == self.gpu_resource for t in tolerations):
            tolerations.append(Toleration(key=self.gpu_resource, operator="Exists"))
        return tolerations

    @property
    def processes_per_node(self) -> int:
        """Training processes per node: one per GPU, or one on a CPU node."""
        return max(self.gpu_count, 1)

    @property
    def world_size(self) -> int:
        """Training processes in all: ``nodes`` × :attr:`processes_per_node`."""
        return self.nodes * self.processes_per_node

    @property
    def distributed(self) -> bool:
        """Whether training needs more than one process (several nodes or GPUs)."""
        return self.world_size > 1

    def torchrun_command(self, args: Sequence[str]) -> list[str]:
        """The ``torchrun`` command line that runs ``metarec <args>`` on every node.

        Node rank and rendezvous address come from the environment the job controller sets
        (``PET_NODE_RANK``, ``PET_MASTER_ADDR``, ``PET_MASTER_PORT``: Kubeflow Trainer and the
        training operator both set them; ``torchrun`` reads ``PET_*`` as its defaults).

        Args:
            args: The ``metarec`` arguments, e.g. ``["train", "--device", "cuda"]``.

        Returns:
            ``torchrun --nnodes=N --nproc-per-node=G -m metarec <args>``.
        """
        return [
            "torchrun",
            f"--nnodes={self.nodes}",
            f"--nproc-per-node={self.processes_per_node}",
            "-m",
            "metarec",
            *args,
        ]

    def one_process(self) -> ComputeSpec:
        """This spec for a single process: one node, and one GPU when the spec has GPUs.

        What a tuning trial or worker gets: it runs one training process, so more GPUs would sit
        idle. Same CPU, memory, GPU model, tolerations and node selector.
        """
        return self.model_copy(update={"nodes": 1, "gpu_count": min(self.gpu_count, 1)})
