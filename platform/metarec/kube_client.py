"""The Kubernetes API client of a process: the pod's ServiceAccount, else the kubeconfig."""

from __future__ import annotations

import os
from typing import Any

from metarec.errors import MetaRecError


def kubernetes_api_client(*, error: type[MetaRecError], fix: str) -> Any:
    """A ``kubernetes.client.ApiClient`` as the pod's ServiceAccount, else as ``KUBECONFIG``.

    ``KUBECONFIG`` is read now (the client library reads it once, at import).

    Args:
        error: The caller's error class, raised when neither credential exists.
        fix: What the user should do then (the error's fix line).

    Raises:
        MetaRecError: Of class ``error``: not in a pod and no usable kubeconfig.
    """
    from kubernetes import client, config

    configuration = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=configuration)
    except config.ConfigException:
        try:
            config.load_kube_config(
                config_file=os.environ.get("KUBECONFIG"), client_configuration=configuration
            )
        except (config.ConfigException, OSError) as exc:
            raise error(
                f"No Kubernetes credentials: not in a pod and no kubeconfig ({exc}).", fix=fix
            ) from exc
    return client.ApiClient(configuration)
