"""The kubelet-less cluster harness: the chart rendered with test values pointing at the local
PostgreSQL (127.0.0.1:5432, db ``test``), Redis (127.0.0.1:6379) and the S3 server the tests start
(``tests/s3_server.py``), and its workloads run as local processes (``workloads.py``).

``tests/`` is not a package (``--import-mode=importlib``): the chart runner of
``tests/helm/conftest.py`` and ``workloads.py`` are loaded from their files and registered once
under their own names; the chart's fixtures are re-exported here (the S3 server's are in
``tests/conftest.py``, for every folder).
"""

from __future__ import annotations

import copy
import importlib.util
import socket
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

TESTS = Path(__file__).resolve().parents[1]
REPO = TESTS.parent
DATABASE_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
# Not MetaRec's defaults (127.0.0.1:6379, db 0): a workload that did not get its store settings
# from the rendered env would write where the tests do not read.
REDIS = "127.0.0.1:6379,db=5"
API_TOKEN = "cluster-harness-token"
# The chart's registry database roles and the Secret key of each one's URL.
REGISTRY_URL_KEYS = {
    "owner": "owner-url",
    "serving": "serving-url",
    "controller": "controller-url",
    "writer": "registry-url",
}
FEEDBACK_TOKEN = "cluster-harness-feedback-token"


def _load(name: str, path: Path) -> ModuleType:
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


_chart = _load("metarec_tests_helm_chart", TESTS / "helm" / "conftest.py")
workloads = _load("metarec_tests_cluster_workloads", Path(__file__).with_name("workloads.py"))

helm = _chart.helm
chart = _chart.chart


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def local_stores() -> None:
    """PostgreSQL and Redis on 127.0.0.1 (skips naming the missing one)."""
    missing = [
        n for n, p in (("PostgreSQL", 5432), ("Redis", 6379)) if not _reachable("127.0.0.1", p)
    ]
    if missing:
        pytest.skip(f"{' and '.join(missing)} not reachable on 127.0.0.1: no cluster harness")


def existing_secrets(
    s3_env: dict[str, str], database: dict[str, str] | None = None
) -> dict[str, dict[str, str]]:
    """The Secrets an operator creates before `helm install` (the chart only references them).

    Args:
        s3_env: The S3 server's credentials.
        database: The registry URL of each key (``owner-url``, ``serving-url``,
            ``controller-url``, ``registry-url``: the writer's); default: DATABASE_URL for all.
    """
    urls = database or {key: DATABASE_URL for key in REGISTRY_URL_KEYS.values()}
    return {
        "metarec-database": {**urls, "feast-registry-url": DATABASE_URL},
        "metarec-redis": {"connection-string": REDIS},
        "metarec-api-token": {"token": API_TOKEN},
        "metarec-feedback-token": {"token": FEEDBACK_TOKEN},
        "metarec-s3": {
            "access-key-id": s3_env["AWS_ACCESS_KEY_ID"],
            "secret-access-key": s3_env["AWS_SECRET_ACCESS_KEY"],
        },
    }


@dataclass
class Cluster:
    """One release of the chart on the kubelet-less cluster."""

    chart: Any
    home: Path
    project: str
    values: dict[str, Any]
    secrets: dict[str, dict[str, str]]
    workdir: Path

    def render(self, **extra: Any) -> Any:
        """`helm template` with the harness values (deep-merged with ``extra`` by helm)."""
        files = [self.workdir / "harness-values.yaml"]
        files[0].write_text(yaml.safe_dump(self.values))
        if extra:
            files.append(self.workdir / f"extra-{uuid.uuid4().hex[:8]}.yaml")
            files[1].write_text(yaml.safe_dump(extra))
        return self.chart.render(*files)

    def run(
        self,
        manifests: Any,
        kind: str,
        component: str,
        *,
        home: Path | None = None,
        commands: dict[str, list[str]] | None = None,
    ) -> list[Any]:
        """Run the pod of the Job or CronJob ``<release>-metarec-<component>`` to completion.

        Args:
            manifests: The rendered chart.
            kind: ``Job`` or ``CronJob``.
            component: The workload's component name.
            home: This pod's own volume at the home mount (an ``emptyDir``), instead of the
                folder every pod shares (``home.existingClaim``): every env value under the
                rendered home path is moved under it.
            commands: Container name → ``metarec`` arguments: run these containers, in order,
                with the env of the pod's (last) container, instead of the pod's own.
        """
        doc = manifests.get(kind, self.chart.name(component))
        objects = workloads.Objects.of(manifests.docs, secrets=self.secrets)
        spec = workloads.job_pod_spec(doc)
        if commands is not None:
            spec = _with_commands(spec, commands)
        if home is not None:
            spec = workloads.with_home(spec, self.values["home"]["path"], home)
        return workloads.run_pod(
            spec,
            objects,
            name=f"{doc['metadata']['name']}-harness",
            namespace=self.chart.namespace,
            cwd=self.workdir,
        )


def _with_commands(spec: dict[str, Any], commands: dict[str, list[str]]) -> dict[str, Any]:
    """The pod spec running ``commands`` (init containers, then the last) in its container."""
    template = spec["containers"][-1]
    containers = [
        {**copy.deepcopy(template), "name": name, "command": ["metarec"], "args": list(args)}
        for name, args in commands.items()
    ]
    return {**spec, "initContainers": containers[:-1], "containers": containers[-1:]}


@dataclass
class RegistryDatabase:
    """A fresh registry schema on the local PostgreSQL and a login role per workload."""

    urls: dict[str, str]  # Secret key → URL (the owner's: postgres, the others' roles)
    roles: dict[str, str]  # workload → login role


@pytest.fixture
def registry_database(local_stores) -> Iterator[RegistryDatabase]:
    """A unique schema (the owner: ``postgres``) and unique serving, controller and writer
    login roles (trust auth, no password), dropped afterwards; the migration Job grants them."""
    import sqlalchemy as sa
    from metarec.testing.registry import postgres_schema

    owner_url, drop_schema = postgres_schema(DATABASE_URL)
    suffix = uuid.uuid4().hex[:8]
    roles = {w: f"metarec_cluster_{suffix}_{w}" for w in REGISTRY_URL_KEYS if w != "owner"}
    admin = sa.create_engine(DATABASE_URL)
    with admin.begin() as connection:
        for role in roles.values():
            connection.execute(sa.text(f"CREATE ROLE {role} LOGIN"))
    urls = {"owner-url": owner_url}
    for workload, role in roles.items():
        urls[REGISTRY_URL_KEYS[workload]] = owner_url.replace("//postgres@", f"//{role}@", 1)
    try:
        yield RegistryDatabase(urls, roles)
    finally:
        drop_schema()
        with admin.begin() as connection:
            for role in roles.values():
                connection.execute(sa.text(f"DROP OWNED BY {role}"))
                connection.execute(sa.text(f"DROP ROLE {role}"))
        admin.dispose()


@pytest.fixture
def cluster(local_stores, registry_database, chart, s3, tmp_path) -> Iterator[Cluster]:
    """The chart's test values: local stores, the S3 server's prefix, a fresh Feast project and a
    local home shared by every pod (as ``home.existingClaim`` shares one on a cluster), unless a
    run gives its pod its own (``Cluster.run(..., home=…)``, an ``emptyDir``).

    The registry is a fresh schema migrated by the chart's db-migrate hook Job (as `helm
    install` runs it first, with the owner's URL); every other pod gets its own role's URL."""
    from metarec.config import load_settings
    from metarec.features.store import open_store

    home = tmp_path / "home"
    project = f"metarec_cluster_{uuid.uuid4().hex[:8]}"
    values = {
        "externalDatabase": {"roles": registry_database.roles},
        "home": {"path": str(home)},
        "feastConfig": {"project": project, "repoPath": str(REPO / "feature_repo")},
        "externalS3": {
            "artifactRoot": s3.url("artifacts"),
            "endpointUrl": s3.server.endpoint_url,
            "region": s3.server.env["AWS_DEFAULT_REGION"],
            "existingSecret": "metarec-s3",
        },
    }
    workdir = tmp_path / "work"
    workdir.mkdir()
    secrets = existing_secrets(s3.server.env, registry_database.urls)
    cluster = Cluster(chart, home, project, values, secrets, workdir)
    steps = cluster.run(cluster.render(), "Job", "db-migrate", home=tmp_path / "db-migrate")
    assert [s.returncode for s in steps] == [0], [s.output for s in steps]
    yield cluster
    settings = load_settings(
        home=home,
        feast={
            "environment": "cluster",
            "project": project,
            "registry_url": DATABASE_URL,
            "redis_connection_string": REDIS,
        },
    )
    open_store(settings).teardown()
