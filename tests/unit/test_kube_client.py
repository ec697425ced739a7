"""The Kubernetes client: the pod's ServiceAccount, else KUBECONFIG, else the caller's error."""

from __future__ import annotations

import pytest
import yaml
from metarec.errors import DeployError
from metarec.kube_client import kubernetes_api_client


@pytest.fixture
def outside_a_pod(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_PORT", raising=False)


def test_without_a_pod_or_kubeconfig_the_callers_error_names_the_fix(
    outside_a_pod, tmp_path, monkeypatch
):
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    with pytest.raises(DeployError, match="No Kubernetes credentials") as raised:
        kubernetes_api_client(error=DeployError, fix="set KUBECONFIG.")
    assert raised.value.fix == "set KUBECONFIG."


def test_the_kubeconfig_of_the_environment_is_read_when_called(
    outside_a_pod, tmp_path, monkeypatch
):
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "https://10.0.0.1:6443"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    client = kubernetes_api_client(error=DeployError, fix="-")
    assert client.configuration.host == "https://10.0.0.1:6443"
