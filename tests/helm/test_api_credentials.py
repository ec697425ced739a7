"""The API pods' credentials: the identities file mounted from its Secret (preferred), the single
token (deprecated), and neither reaching any other workload."""

from __future__ import annotations

import pytest

IDENTITIES = ["controlPlane.api.identitiesSecret=metarec-api-identities"]


def _api_container(manifests, chart):
    pod = manifests.get("Deployment", chart.name("api"))["spec"]["template"]["spec"]
    return pod, pod["containers"][0]


def _env(container):
    return {e["name"]: e for e in container.get("env", [])}


def test_the_identities_file_is_mounted_read_only_in_the_api_pods(chart):
    m = chart.render(sets=[*IDENTITIES, "controlPlane.api.tokenSecret="])
    pod, container = _api_container(m, chart)
    env = _env(container)
    assert env["METAREC_REGISTRY__API_TOKENS_FILE"]["value"] == "/etc/metarec/api/identities.yaml"
    assert "METAREC_REGISTRY__API_TOKEN" not in env
    (mount,) = [v for v in container["volumeMounts"] if v["name"] == "api-identities"]
    assert mount == {"name": "api-identities", "mountPath": "/etc/metarec/api", "readOnly": True}
    assert "subPath" not in mount  # an updated Secret must reach the pod (token rotation)
    (volume,) = [v for v in pod["volumes"] if v["name"] == "api-identities"]
    assert volume["secret"]["secretName"] == "metarec-api-identities"
    assert volume["secret"]["items"] == [{"key": "identities.yaml", "path": "identities.yaml"}]


def test_no_other_workload_gets_the_api_credentials(chart):
    m = chart.render(sets=IDENTITIES)
    for where, pod in m.pod_specs():
        if where == f"Deployment/{chart.name('api')}":
            continue
        names = {e["name"] for c in pod["containers"] for e in c.get("env", [])}
        assert not names & {"METAREC_REGISTRY__API_TOKEN", "METAREC_REGISTRY__API_TOKENS_FILE"}, (
            where
        )
        volumes = {v["name"] for v in pod.get("volumes", [])}
        assert "api-identities" not in volumes, where


def test_both_during_a_migration_and_the_single_token_alone_by_default(chart, default):
    _pod, container = _api_container(chart.render(sets=IDENTITIES), chart)
    env = _env(container)
    assert {"METAREC_REGISTRY__API_TOKENS_FILE", "METAREC_REGISTRY__API_TOKEN"} <= set(env)
    _pod, container = _api_container(default, chart)
    env = _env(container)
    assert "METAREC_REGISTRY__API_TOKENS_FILE" not in env
    assert env["METAREC_REGISTRY__API_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == (
        "metarec-api-token"
    )


@pytest.mark.parametrize("sets", [[], ["controlPlane.api.flaggerTokenSecret=metarec-flagger"]])
def test_the_flagger_canary_renders_with_or_without_its_own_token_secret(chart, sets):
    # `helm template` has no cluster to look the Secret up in: the token itself is not rendered.
    (canary,) = chart.render(chart.gpu_values, sets=sets).of_kind("Canary")
    assert "token" not in canary["spec"]["analysis"]["webhooks"][0].get("metadata", {})


def test_without_any_credential_the_chart_names_the_values(chart):
    proc = chart.run(
        "template", chart.release, str(chart.path), "--set", "controlPlane.api.tokenSecret="
    )
    assert proc.returncode != 0
    assert "controlPlane.api.tokenSecret is required (or controlPlane.api.identitiesSecret)" in (
        proc.stderr
    )
