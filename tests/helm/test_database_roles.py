"""Least-privilege registry database credentials in the chart.

Migrations run once, in the db-migrate hook Job, with the owner's URL; every other workload opens
the registry without migrating and with its own role's URL: serving pods the serving role's
(never the owner's, never the API token), the rollout controller the controller role's, the rest
the writer's.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

HOOK = "db-migrate"


def _env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


def _database_key(container: dict[str, Any]) -> str | None:
    entry = _env(container).get("METAREC_REGISTRY__DATABASE_URL")
    if entry is None:
        return None
    return entry["valueFrom"]["secretKeyRef"]["key"]


def _database_secret(chart, manifests) -> str:
    """The database Secret's name (each values file names its own)."""
    job = manifests.get("Job", chart.name(HOOK))
    env = _env(job["spec"]["template"]["spec"]["containers"][0])
    return env["METAREC_REGISTRY__DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"]


def _secret_keys(pod: dict[str, Any]) -> set[tuple[str, str]]:
    """Every (Secret, key) a pod spec references."""
    found: set[tuple[str, str]] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "secretKeyRef" in node:
                found.add((node["secretKeyRef"]["name"], node["secretKeyRef"]["key"]))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(pod)
    return found


def test_the_migration_hook_job_runs_db_upgrade_with_the_owner_url(chart, default):
    job = default.get("Job", chart.name(HOOK))
    annotations = job["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert annotations["helm.sh/hook-delete-policy"] == "before-hook-creation,hook-succeeded"
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert [*container["command"], *container["args"]] == ["metarec", "db", "upgrade"]
    assert _database_key(container) == "owner-url"
    env = _env(container)
    assert env["METAREC_REGISTRY__DATABASE_ROLES__SERVING"]["value"] == "metarec_serving"
    assert env["METAREC_REGISTRY__DATABASE_ROLES__CONTROLLER"]["value"] == "metarec_controller"
    assert env["METAREC_REGISTRY__DATABASE_ROLES__WRITER"]["value"] == "metarec_writer"
    assert "METAREC_REGISTRY__MIGRATE_ON_OPEN" not in env
    assert pod["automountServiceAccountToken"] is False
    # A pre-install hook runs before the release's ServiceAccount exists.
    assert pod["serviceAccountName"] == "default"


def test_only_the_hook_holds_the_owner_url(chart, manifests):
    hook = f"Job/{chart.name(HOOK)}"
    secret = _database_secret(chart, manifests)
    for workload, pod in manifests.pod_specs():
        holds_owner = (secret, "owner-url") in _secret_keys(pod)
        assert holds_owner == (workload == hook), workload
    for doc in manifests.docs:  # ConfigMaps too (the Prefect work pool's job template)
        if doc["kind"] not in ("Deployment", "Job", "CronJob"):
            assert "owner-url" not in json.dumps(doc), f"{doc['kind']}/{doc['metadata']['name']}"


def test_every_other_workload_opens_the_registry_without_migrating(chart, manifests):
    hook = f"Job/{chart.name(HOOK)}"
    checked = 0
    for where, container in manifests.containers():
        if where.startswith(f"{hook}/") or _database_key(container) is None:
            continue
        env = _env(container)
        assert env["METAREC_REGISTRY__MIGRATE_ON_OPEN"]["value"] == "false", where
        checked += 1
    assert checked >= 4


def test_each_workload_gets_its_own_role_url_and_serving_no_api_token(chart, manifests):
    expected = {"adaptation": "serving-url", "rollout-controller": "controller-url"}
    seen = set()
    for where, container in manifests.containers():
        key = _database_key(container)
        if key is None or where.startswith(f"Job/{chart.name(HOOK)}/"):
            continue
        assert key == expected.get(container["name"], "registry-url"), where
        seen.add(container["name"])
    assert {"adaptation", "api"} <= seen
    secret = _database_secret(chart, manifests)
    api = manifests.get("Deployment", chart.name("api"))["spec"]["template"]["spec"]
    token_ref = _env(api["containers"][0])["METAREC_REGISTRY__API_TOKEN"]["valueFrom"]
    token = (token_ref["secretKeyRef"]["name"], token_ref["secretKeyRef"]["key"])
    for workload, pod in manifests.pod_specs():
        if "serving" not in workload:
            continue
        keys = _secret_keys(pod)
        assert token not in keys, workload
        assert (secret, "serving-url") in keys and (secret, "registry-url") not in keys


def test_keys_and_roles_are_values(chart):
    manifests = chart.render(
        sets=[
            "externalDatabase.ownerUrlKey=admin",
            "externalDatabase.servingUrlKey=reader",
            "externalDatabase.roles.writer=",
        ]
    )
    container = manifests.get("Job", chart.name(HOOK))["spec"]["template"]["spec"]["containers"][0]
    assert _database_key(container) == "admin"
    assert "METAREC_REGISTRY__DATABASE_ROLES__WRITER" not in _env(container)
    serving = manifests.get("Deployment", chart.name("serving-production"))
    assert _database_key(serving["spec"]["template"]["spec"]["containers"][0]) == "reader"


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("externalDatabase.ownerUrlKey=", "ownerUrlKey"),
        ("externalDatabase.roles.serving=Robert;DROP", "serving"),
    ],
)
def test_bad_database_values_are_refused(chart, value, says):
    with pytest.raises(chart.RenderError, match=says):
        chart.render(sets=[value])
