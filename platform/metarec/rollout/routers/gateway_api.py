"""Kubernetes Gateway API: the ``backendRefs`` weights of an ``HTTPRoute``.

Patched through the official Kubernetes Python client (what the Helm chart configures). Every
failure, an API error or an API server that cannot be reached (refused, reset, timed out),
raises :class:`~metarec.errors.RouterError`, so the controller retries on its next tick.
"""

from __future__ import annotations

import copy
from typing import Any

from metarec.errors import RouterError
from metarec.rollout.routers.base import Weights
from metarec.router_config import GatewayAPIRouterConfig

HTTPROUTE_GROUP = "gateway.networking.k8s.io"
HTTPROUTE_VERSION = "v1"
HTTPROUTE_PLURAL = "httproutes"
UNREACHABLE_FIX = (
    "check that the controller reaches the Kubernetes API server (its address in the in-cluster "
    "config or kubeconfig, egress NetworkPolicy to the API server); the controller retries on "
    "its next tick."
)


def _connection_errors() -> tuple[type[BaseException], ...]:
    """What the Kubernetes client raises when the API server cannot be reached or answer."""
    from urllib3.exceptions import HTTPError

    return (HTTPError, OSError)


def _cause(exc: BaseException) -> str:
    """``Type: first line`` of what went wrong (a MaxRetryError: of its underlying cause)."""
    cause = getattr(exc, "reason", None)
    cause = cause if isinstance(cause, BaseException) else exc
    text = str(cause).splitlines()[0] if str(cause) else "no detail"
    return f"{type(cause).__name__}: {text}"


class GatewayAPIRouter:
    """Sets the ``backendRefs`` weights of a Gateway API ``HTTPRoute``.

    Every rule that references both the production and the canary Service gets the new
    weights. The patch is a JSON merge patch of ``spec.rules`` carrying the
    ``metadata.resourceVersion`` that was read, so a concurrent edit of the route makes the API
    server answer 409 and the change is re-read and retried instead of overwriting it.
    """

    def __init__(
        self,
        *,
        api: Any,
        namespace: str,
        name: str,
        production_backend: str,
        canary_backend: str,
        retries: int = 3,
        request_timeout_s: float = 10.0,
    ) -> None:
        """Address one HTTPRoute.

        Args:
            api: A ``kubernetes.client.CustomObjectsApi``.
            namespace: The route's namespace.
            name: The route's name.
            production_backend: Name of the production Service in ``backendRefs``.
            canary_backend: Name of the canary Service in ``backendRefs``.
            retries: Attempts on a 409 conflict.
            request_timeout_s: Longest wait for the API server (connect and read) per call.
        """
        self._api = api
        self._namespace = namespace
        self._name = name
        self._production = production_backend
        self._canary = canary_backend
        self._retries = retries
        # (connect, read): the client ignores a single float (it only takes an int or a pair).
        self._timeouts = (request_timeout_s, request_timeout_s)

    @classmethod
    def in_cluster(
        cls, *, namespace: str, name: str, production_backend: str, canary_backend: str
    ) -> GatewayAPIRouter:
        """A router using the pod's service account (or the local kubeconfig outside a pod)."""
        from kubernetes import client, config

        try:
            config.load_incluster_config()
        except config.ConfigException:
            config.load_kube_config()
        return cls(
            api=client.CustomObjectsApi(),
            namespace=namespace,
            name=name,
            production_backend=production_backend,
            canary_backend=canary_backend,
        )

    @classmethod
    def from_config(cls, config: GatewayAPIRouterConfig) -> GatewayAPIRouter:
        """The in-cluster router a :class:`GatewayAPIRouterConfig` describes."""
        return cls.in_cluster(
            namespace=config.namespace,
            name=config.httproute,
            production_backend=config.production_backend,
            canary_backend=config.canary_backend,
        )

    def _where(self) -> str:
        return f"HTTPRoute {self._namespace}/{self._name}"

    def _unreachable(self, verb: str, exc: BaseException) -> RouterError:
        return RouterError(
            f"Cannot {verb} {self._where()}: the Kubernetes API server did not answer "
            f"({_cause(exc)}).",
            fix=UNREACHABLE_FIX,
        )

    def _get(self) -> dict[str, Any]:
        from kubernetes.client.exceptions import ApiException

        try:
            return self._api.get_namespaced_custom_object(
                HTTPROUTE_GROUP,
                HTTPROUTE_VERSION,
                self._namespace,
                HTTPROUTE_PLURAL,
                self._name,
                _request_timeout=self._timeouts,
            )
        except _connection_errors() as exc:
            raise self._unreachable("read", exc) from exc
        except ApiException as exc:
            if not exc.status:  # the client's own wrapping of an SSL / connection failure
                raise self._unreachable("read", exc) from exc
            raise RouterError(
                f"Cannot read {self._where()} (HTTP {exc.status}: {exc.reason}).",
                fix="check rollout.router.namespace / rollout.router.httproute and that the "
                "controller's ServiceAccount may get and patch it.",
            ) from exc

    def _rules(self, route: dict[str, Any]) -> list[tuple[int, int, int]]:
        """(rule index, production ref index, canary ref index) of every weighted rule."""
        found = []
        for i, rule in enumerate(route.get("spec", {}).get("rules", [])):
            names = [ref.get("name") for ref in rule.get("backendRefs", [])]
            if self._production in names and self._canary in names:
                found.append((i, names.index(self._production), names.index(self._canary)))
        if not found:
            raise RouterError(
                f"{self._where()} has no rule with both backendRefs {self._production!r} and "
                f"{self._canary!r}.",
                fix="enable the canary in the Helm values (serving.canary.enabled) or correct "
                "rollout.router.production_backend / rollout.router.canary_backend.",
            )
        return found

    def weights(self) -> Weights:
        """The split of the first weighted rule."""
        route = self._get()
        i, p, c = self._rules(route)[0]
        refs = route["spec"]["rules"][i]["backendRefs"]
        return Weights(production=refs[p].get("weight", 1), canary=refs[c].get("weight", 1))

    def set_weights(self, *, production: int, canary: int) -> None:
        """Patch every weighted rule to ``production``/``canary`` (sum 100)."""
        from kubernetes.client.exceptions import ApiException

        Weights(production=production, canary=canary)
        for attempt in range(self._retries):
            route = self._get()
            rules = copy.deepcopy(route["spec"]["rules"])
            for i, p, c in self._rules(route):
                rules[i]["backendRefs"][p]["weight"] = production
                rules[i]["backendRefs"][c]["weight"] = canary
            if rules == route["spec"]["rules"]:
                return  # already there: nothing to patch
            try:
                self._patch(route, rules)
                return
            except _connection_errors() as exc:  # applied or not: the next tick re-reads it
                raise self._unreachable("patch the weights of", exc) from exc
            except ApiException as exc:
                if exc.status == 409 and attempt + 1 < self._retries:
                    continue
                raise RouterError(
                    f"Cannot patch the weights of {self._where()} (HTTP {exc.status}: "
                    f"{exc.reason}).",
                    fix="check that the controller's ServiceAccount may patch the route and that "
                    "nothing else rewrites it continuously.",
                ) from exc

    def _patch(self, route: dict[str, Any], rules: list[dict[str, Any]]) -> None:
        """Merge-patch ``spec.rules``, guarded by the ``resourceVersion`` that was read."""
        body = {
            "metadata": {"resourceVersion": route["metadata"].get("resourceVersion")},
            "spec": {"rules": rules},
        }
        self._api.patch_namespaced_custom_object(
            HTTPROUTE_GROUP,
            HTTPROUTE_VERSION,
            self._namespace,
            HTTPROUTE_PLURAL,
            self._name,
            body,
            _request_timeout=self._timeouts,
        )

    def close(self) -> None:
        """Nothing to release: the route keeps the weights last set."""
