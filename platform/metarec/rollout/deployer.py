"""The deploy step: set a registry version on a serving Deployment (and on Flagger's Canary).

Through the official Kubernetes Python client, as the pod's ServiceAccount (the Helm chart's
``<fullname>-deployer``, allowed ``get``/``patch`` on exactly the one Deployment and Canary):

* :meth:`KubernetesDeployer.set_version` patches the serving container's ``args`` to
  ``serve --version N --port P`` (``--stage``/``--version``/``--port`` replaced, every other
  argument kept) and records the version in the pod-template annotation
  :data:`VERSION_ANNOTATION`. It is a strategic merge patch of
  ``spec.template.spec.containers[name=…]`` carrying the ``resourceVersion`` that was read.
* :meth:`KubernetesDeployer.set_canary_version` sets ``metadata.version`` (``metarec:v7``) on the
  chart's webhooks of a Flagger ``Canary`` (the version its webhooks confirm, promote or roll
  back), a JSON merge patch of ``spec.analysis.webhooks`` with the ``resourceVersion`` read.

A 409 (the object changed between read and patch) is re-read and retried; an unchanged object
is not patched at all, so a retried pipeline step is a no-op.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from metarec.config_rollout import DeploySettings
from metarec.errors import DeployError
from metarec.kube_client import kubernetes_api_client

T = TypeVar("T")

VERSION_ANNOTATION: Final = "metarec.io/version"
CANARY_GROUP: Final = "flagger.app"
CANARY_API_VERSION: Final = "v1beta1"
CANARY_PLURAL: Final = "canaries"
# The Helm chart's webhooks of the Canary (templates/flagger.yaml); others are left alone.
CHART_WEBHOOK_PREFIX: Final = "metarec-"
ROLE_HINT: Final = (
    "the Helm chart's Role <fullname>-deployer (templates/deployer-rbac.yaml) allows get and "
    "patch on exactly this object: run the step under its ServiceAccount <fullname>-deployer "
    "(retrain.deploy.enabled) or grant those verbs to the pod's ServiceAccount"
)
_REPLACED: Final = ("--version", "--stage", "--port")


def serve_args(args: Sequence[str], *, version: int, port: int) -> list[str]:
    """``args`` of ``metarec serve`` with ``--version version --port port``, others kept.

    ``--version``, ``--stage`` and ``--port`` (as ``--x v`` or ``--x=v``) are dropped and the
    new pair is put right after ``serve``; every other argument keeps its place.

    Raises:
        DeployError: ``args`` is not a ``serve`` command line.
    """
    if not args or args[0] != "serve":
        raise DeployError(
            f"The container runs {' '.join(args) or 'no args'!r}, not `metarec serve`.",
            fix="point rollout.deploy.container at the serving container (chart: adaptation).",
        )
    kept: list[str] = []
    rest = iter(args[1:])
    for arg in rest:
        if arg in _REPLACED:
            next(rest, None)  # its value
        elif not arg.startswith(tuple(f"{flag}=" for flag in _REPLACED)):
            kept.append(arg)
    return ["serve", "--version", str(version), "--port", str(port), *kept]


@dataclass(frozen=True)
class DeployedVersion:
    """What :meth:`KubernetesDeployer.set_version` left on the Deployment.

    Attributes:
        deployment: ``namespace/name``.
        args: The serving container's args now.
        patched: False when the Deployment already served the version (nothing sent).
        generation: The Deployment's ``metadata.generation`` after the patch.
    """

    deployment: str
    args: tuple[str, ...]
    patched: bool
    generation: int


def _api_error(exc: Any, *, action: str, fix: str) -> DeployError:
    """A :class:`DeployError` for an ``ApiException``: 403 names the Role, others ``fix``."""
    status = getattr(exc, "status", None)
    if status in (401, 403):
        fix = ROLE_HINT + "."
    return DeployError(f"Cannot {action} (HTTP {status}: {getattr(exc, 'reason', exc)}).", fix=fix)


class KubernetesDeployer:
    """Sets the served version on one Deployment (and the webhooks of one Flagger Canary)."""

    def __init__(
        self,
        *,
        api_client: Any,
        namespace: str,
        deployment: str,
        container: str,
        port: int,
        flagger_canary: str = "",
        retries: int = 3,
    ) -> None:
        """Address the Deployment (and Canary).

        Args:
            api_client: A ``kubernetes.client.ApiClient``.
            namespace: Namespace of both objects.
            deployment: The serving Deployment.
            container: Its serving container.
            port: The ``serve --port`` it listens on.
            flagger_canary: The Flagger Canary (empty: none).
            retries: Attempts on a 409 conflict.
        """
        from kubernetes import client

        self._apps = client.AppsV1Api(api_client)
        self._custom = client.CustomObjectsApi(api_client)
        self._namespace = namespace
        self._deployment = deployment
        self._container = container
        self._port = port
        self._canary = flagger_canary
        self._retries = retries

    @classmethod
    def from_settings(cls, deploy: DeploySettings) -> KubernetesDeployer:
        """The deployer of ``rollout.deploy``, as the pod's ServiceAccount (else kubeconfig)."""
        api_client = kubernetes_api_client(
            error=DeployError,
            fix="run in the cluster (the chart's retrain pod) or set KUBECONFIG.",
        )
        return cls(
            api_client=api_client,
            namespace=deploy.namespace,
            deployment=deploy.deployment,
            container=deploy.container,
            port=deploy.port,
            flagger_canary=deploy.flagger_canary if deploy.engine == "flagger" else "",
        )

    @property
    def where(self) -> str:
        """``namespace/deployment``."""
        return f"{self._namespace}/{self._deployment}"

    def _read(self) -> Any:
        from kubernetes.client.exceptions import ApiException

        try:
            return self._apps.read_namespaced_deployment(self._deployment, self._namespace)
        except ApiException as exc:
            raise _api_error(
                exc,
                action=f"read Deployment {self.where}",
                fix="check rollout.deploy.namespace and rollout.deploy.deployment (chart: the "
                "canary Deployment needs serving.canary.enabled; Flagger's target is the "
                "production Deployment).",
            ) from exc

    def _container_of(self, deployment: Any) -> Any:
        for container in deployment.spec.template.spec.containers:
            if container.name == self._container:
                return container
        names = [c.name for c in deployment.spec.template.spec.containers]
        raise DeployError(
            f"Deployment {self.where} has no container {self._container!r} (has {names}).",
            fix="set rollout.deploy.container to the serving container's name.",
        )

    def set_version(self, *, model: str, version: int) -> DeployedVersion:
        """Make the serving container run ``serve --version version --port <port>``.

        Args:
            model: The registered model (the annotation reads ``<model>:v<version>``).
            version: The registry version to serve.

        Raises:
            DeployError: The Deployment or container is missing, the ServiceAccount may not
                read or patch it (403), or it kept changing (409 after every retry).
        """
        tag = f"{model}:v{version}"

        def attempt() -> DeployedVersion:
            current = self._read()
            args = serve_args(
                self._container_of(current).args or [], version=version, port=self._port
            )
            annotations = current.spec.template.metadata.annotations or {}
            if (
                args == self._container_of(current).args
                and annotations.get(VERSION_ANNOTATION) == tag
            ):
                return DeployedVersion(
                    self.where, tuple(args), False, current.metadata.generation or 0
                )
            body = {
                "metadata": {"resourceVersion": current.metadata.resource_version},
                "spec": {
                    "template": {
                        "metadata": {"annotations": {VERSION_ANNOTATION: tag}},
                        "spec": {"containers": [{"name": self._container, "args": args}]},
                    }
                },
            }
            patched = self._apps.patch_namespaced_deployment(
                self._deployment, self._namespace, body
            )
            return DeployedVersion(self.where, tuple(args), True, patched.metadata.generation or 0)

        return self._retrying_conflicts(
            attempt,
            action=f"patch Deployment {self.where}",
            fix="check that nothing else rewrites the Deployment continuously, then rerun the "
            "step.",
        )

    def _retrying_conflicts(self, attempt: Callable[[], T], *, action: str, fix: str) -> T:
        """Run a read-modify-patch ``attempt``; a 409 (changed since read) runs it again.

        Raises:
            DeployError: Any other API error, or a 409 after every retry.
        """
        from kubernetes.client.exceptions import ApiException

        for tries_left in range(self._retries - 1, -1, -1):
            try:
                return attempt()
            except ApiException as exc:
                if exc.status == 409 and tries_left:
                    continue
                raise _api_error(exc, action=action, fix=fix) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def wait_ready(self, *, generation: int, timeout_s: float, poll_s: float = 2.0) -> None:
        """Wait until the Deployment rolled out ``generation`` (every replica updated, available).

        Raises:
            DeployError: Not rolled out within ``timeout_s``.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            current = self._read()
            status = current.status
            wanted = 1 if current.spec.replicas is None else current.spec.replicas
            if (
                status is not None
                and (status.observed_generation or 0) >= generation
                and (status.updated_replicas or 0) >= wanted
                and (status.available_replicas or 0) >= wanted
                and (status.replicas or 0) <= wanted
            ):
                return
            if time.monotonic() > deadline:
                raise DeployError(
                    f"Deployment {self.where} did not roll out generation {generation} within "
                    f"{timeout_s:g}s.",
                    fix=f"see `kubectl -n {self._namespace} rollout status deployment/"
                    f"{self._deployment}` and the new pods' logs (does the version load?).",
                )
            time.sleep(poll_s)

    def set_canary_version(self, *, model: str, version: int) -> bool:
        """Set ``metadata.version`` of the Canary's chart webhooks to ``<model>:v<version>``.

        Returns:
            Whether a patch was sent (False: already set).

        Raises:
            DeployError: No Canary configured or found, it has no chart webhook, the
                ServiceAccount may not read or patch it (403), or it kept changing (409).
        """
        if not self._canary:
            raise DeployError(
                "No Flagger Canary is configured.",
                fix="set rollout.deploy.flagger_canary (chart: rendered with rollout.engine "
                "flagger).",
            )
        tag = f"{model}:v{version}"

        def attempt() -> bool:
            canary = self._read_canary()
            hooks = _with_version(canary, tag, where=self._canary_where())
            if hooks is None:
                return False
            body = {
                "metadata": {"resourceVersion": canary["metadata"].get("resourceVersion")},
                "spec": {"analysis": {"webhooks": hooks}},
            }
            self._custom.patch_namespaced_custom_object(
                CANARY_GROUP, CANARY_API_VERSION, self._namespace, CANARY_PLURAL, self._canary, body
            )
            return True

        return self._retrying_conflicts(
            attempt,
            action=f"patch {self._canary_where()}",
            fix="check that nothing else rewrites the Canary continuously, then rerun.",
        )

    def _canary_where(self) -> str:
        return f"Flagger Canary {self._namespace}/{self._canary}"

    def _read_canary(self) -> dict[str, Any]:
        from kubernetes.client.exceptions import ApiException

        try:
            return self._custom.get_namespaced_custom_object(
                CANARY_GROUP, CANARY_API_VERSION, self._namespace, CANARY_PLURAL, self._canary
            )
        except ApiException as exc:
            raise _api_error(
                exc,
                action=f"read {self._canary_where()}",
                fix="check rollout.deploy.flagger_canary and that Flagger's CRDs are installed "
                "(chart: rollout.engine=flagger renders the Canary).",
            ) from exc


def _with_version(canary: dict[str, Any], tag: str, *, where: str) -> list[dict[str, Any]] | None:
    """The webhooks with ``metadata.version`` = ``tag`` on the chart's (None: no change)."""
    hooks = copy.deepcopy(canary.get("spec", {}).get("analysis", {}).get("webhooks") or [])
    ours = [hook for hook in hooks if str(hook.get("name", "")).startswith(CHART_WEBHOOK_PREFIX)]
    if not ours:
        raise DeployError(
            f"{where} has no webhook named {CHART_WEBHOOK_PREFIX}* (the chart's webhooks).",
            fix="render the Canary with the Helm chart (templates/flagger.yaml), whose webhooks "
            "call `metarec api`.",
        )
    if all((hook.get("metadata") or {}).get("version") == tag for hook in ours):
        return None
    for hook in ours:
        hook["metadata"] = {**(hook.get("metadata") or {}), "version": tag}
    return hooks
