"""The control-plane API over HTTP (in-process ASGI client), with a real SQLite registry."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from metarec.api import create_app
from metarec.config import load_settings
from metarec.registry import Registry
from metarec.testing.registry import POSTGRES_URL, write_fixture_artifact

pytestmark = pytest.mark.integration

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MUTATING = [
    ("post", "/models/metarec/versions", {"artifact": "/nowhere"}),
    ("post", "/models/metarec/versions/1/promote", {"reason": "r"}),
    ("post", "/models/metarec/versions/1/archive", {"reason": "r"}),
    ("post", "/models/metarec/rollback", {"reason": "r"}),
    ("post", "/gate", {"artifact": "/nowhere"}),
]


def make_client(tmp_path: Path, **registry_settings) -> Iterator[TestClient]:
    settings = load_settings(
        home=tmp_path / "home",
        registry={"api_token": TOKEN, "export_bentoml": False, **registry_settings},
    )
    with TestClient(create_app(settings)) as client:
        yield client


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    yield from make_client(tmp_path)


@pytest.mark.parametrize(("method", "path", "body"), MUTATING)
@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": TOKEN},
    ],
    ids=["none", "wrong", "basic", "no-scheme"],
)
def test_mutating_calls_need_the_token(client, method, path, body, headers):
    response = getattr(client, method)(path, json=body, headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["error"] == "AuthError"
    assert "Fix:" not in response.json()["problem"] and response.json()["fix"]


def test_without_configured_token_mutations_are_refused(tmp_path):
    settings = load_settings(home=tmp_path / "home", registry={"export_bentoml": False})
    with TestClient(create_app(settings)) as client:
        response = client.post("/models/metarec/rollback", json={"reason": "r"}, headers=AUTH)
    assert response.status_code == 401
    assert "no token configured" in response.json()["problem"]


def test_reads_are_open_by_default_and_protected_by_config(tmp_path):
    for client in make_client(tmp_path / "open"):
        assert client.get("/models").status_code == 200
        assert client.get("/healthz").json() == {"status": "ok", "database": "sqlite"}
    for client in make_client(tmp_path / "closed", read_requires_token=True):
        assert client.get("/models").status_code == 401
        assert client.get("/models/metarec/history").status_code == 401
        assert client.get("/models", headers=AUTH).status_code == 200


def test_round_trip_over_http(client, tmp_path):
    first = write_fixture_artifact(tmp_path / "a1", seed=1)
    second = write_fixture_artifact(tmp_path / "a2", seed=2, mae=0.77)
    bad = write_fixture_artifact(tmp_path / "bad", seed=3, mae=0.99)

    gate = client.post("/gate", json={"artifact": str(first)}, headers=AUTH)
    assert gate.status_code == 200 and gate.json()["accepted"] is True

    created = client.post(
        "/models/metarec/versions", json={"artifact": str(first), "actor": "ci"}, headers=AUTH
    )
    assert created.status_code == 201
    assert created.json()["tag"] == "metarec:v1" and created.json()["stage"] == "staging"
    promoted = client.post(
        "/models/metarec/versions/1/promote",
        json={"reason": "first", "evidence": {"canary": "ok"}, "expected_production": 0},
        headers=AUTH,
    )
    assert promoted.status_code == 200 and promoted.json()["stage"] == "production"

    client.post("/models/metarec/versions", json={"artifact": str(second)}, headers=AUTH)
    stale = client.post(
        "/models/metarec/versions/2/promote",
        json={"reason": "second", "expected_production": 0},
        headers=AUTH,
    )
    assert stale.status_code == 409
    assert "production changed" in stale.json()["problem"]
    ok = client.post(
        "/models/metarec/versions/2/promote",
        json={"reason": "second", "expected_production": 1},
        headers=AUTH,
    )
    assert ok.status_code == 200
    assert client.get("/models/metarec/versions/1").json()["stage"] == "archived"

    rejected = client.post("/models/metarec/versions", json={"artifact": str(bad)}, headers=AUTH)
    assert rejected.status_code == 422
    assert rejected.json()["error"] == "GateRejectedError"
    assert rejected.json()["detail"]["accepted"] is False

    back = client.post("/models/metarec/rollback", json={"reason": "oops"}, headers=AUTH)
    assert back.status_code == 200 and back.json()["version"] == 1
    assert client.get("/models/metarec/production").json()["version"] == 1

    entries = client.get("/models/metarec/history").json()
    # The actor is the token's identity (the single token: api-token), never the body's "ci".
    assert {e["actor"] for e in entries} == {"api-token"}
    actions = [e["action"] for e in entries]
    assert actions == [
        "register",
        "promote",
        "register",
        "archive",
        "promote",
        "reject",
        "archive",
        "rollback",
    ]
    assert client.get("/models").json()[0] == {
        "name": "metarec",
        "versions": 2,
        "production": 1,
        "created_at": client.get("/models").json()[0]["created_at"],
    }
    archived = client.post(
        "/models/metarec/versions/2/archive", json={"reason": "again"}, headers=AUTH
    )
    assert archived.status_code == 409


def test_errors_are_4xx_with_reason(client):
    assert client.get("/models/nope/versions").status_code == 404
    assert client.get("/models/metarec/production").status_code == 404
    assert client.get("/models/metarec/versions/0").status_code == 422
    assert client.get("/models/BAD NAME/versions").status_code == 422
    response = client.post("/models/metarec/versions", json={"artifact": "/nowhere"}, headers=AUTH)
    assert response.status_code == 422
    assert response.json()["error"] == "ArtifactError"
    nan = client.post(
        "/models/metarec/rollback",
        content=b'{"reason": "r", "evidence": {"x": NaN}}',
        headers={**AUTH, "content-type": "application/json"},
    )
    assert nan.status_code == 422


def test_openapi_is_served_with_bearer_security(client):
    schema = client.get("/openapi.json").json()
    assert "HTTPBearer" in schema["components"]["securitySchemes"]
    assert "/models/{model}/versions/{version}/promote" in schema["paths"]
    assert client.get("/docs").status_code == 200


def test_registry_can_be_injected(tmp_path):
    settings = load_settings(home=tmp_path / "home", registry={"api_token": TOKEN})
    registry = Registry.connect(url=f"sqlite:///{tmp_path / 'x.db'}", artifact_root=str(tmp_path))
    with TestClient(create_app(settings, registry=registry)) as client:
        assert client.get("/models").json() == []
    assert registry.list_models() == []  # still open: the caller owns it
    registry.close()


@pytest.mark.slow
def test_metarec_api_serves_over_http(tmp_path):
    import os
    import socket
    import subprocess
    import sys
    import time

    import httpx

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {
        **os.environ,
        "METAREC_HOME": str(tmp_path / "home"),
        "METAREC_REGISTRY__API_TOKEN": TOKEN,
        "METAREC_REGISTRY__EXPORT_BENTOML": "false",
    }
    metarec = Path(sys.executable).parent / "metarec"
    process = subprocess.Popen(
        [str(metarec), "api", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, process.stdout.read().decode()
            assert time.monotonic() < deadline, "metarec api did not become ready"
            time.sleep(0.2)
        assert httpx.get(f"{base}/openapi.json").json()["info"]["title"] == "MetaRec control plane"
        denied = httpx.post(f"{base}/models/metarec/rollback", json={"reason": "r"})
        assert denied.status_code == 401
        allowed = httpx.post(f"{base}/models/metarec/rollback", json={"reason": "r"}, headers=AUTH)
        assert allowed.status_code == 404  # authorised; the model does not exist yet
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_probes_answer_without_a_token_even_when_reads_need_one(tmp_path):
    for client in make_client(tmp_path, read_requires_token=True):
        assert client.get("/models").status_code == 401
        live, ready = client.get("/healthz"), client.get("/readyz")
    assert (live.status_code, live.json()) == (200, {"status": "ok", "database": "sqlite"})
    assert (ready.status_code, ready.json()) == (200, {"status": "ok", "database": "sqlite"})


@contextmanager
def scratch_postgres_database() -> Iterator[tuple[str, Callable[[str], None]]]:
    """A fresh PostgreSQL database: (its URL, run one admin statement on the server)."""
    import sqlalchemy as sa

    name = f"metarec_ready_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(
        POSTGRES_URL, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3}
    )

    def execute(statement: str) -> None:
        with admin.connect() as connection:
            connection.execute(sa.text(statement.format(db=f'"{name}"')))

    try:
        execute("CREATE DATABASE {db}")
    except sa.exc.OperationalError as exc:
        admin.dispose()
        print(f"SKIP reason: PostgreSQL at {POSTGRES_URL} does not answer: {exc.orig}")
        pytest.skip(f"PostgreSQL at {POSTGRES_URL} does not answer: {exc.orig}")
    try:
        yield POSTGRES_URL.rsplit("/", 1)[0] + f"/{name}", execute
    finally:
        execute("DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        admin.dispose()


def test_readiness_follows_the_registry_database(tmp_path):
    """PostgreSQL goes away: /readyz answers 503 with a one-line reason, /healthz stays 200;
    it comes back: /readyz answers 200 again (through the same pooled engine)."""
    settings = load_settings(home=tmp_path / "home", registry={"export_bentoml": False})
    with (
        scratch_postgres_database() as (url, execute),
        Registry.connect(url=url, artifact_root=str(tmp_path / "artifacts")) as registry,
        TestClient(create_app(settings, registry=registry)) as client,
    ):
        assert client.get("/readyz").json() == {"status": "ok", "database": "postgresql"}
        execute("DROP DATABASE {db} WITH (FORCE)")  # also ends the pool's connections
        down = client.get("/readyz")
        assert down.status_code == 503
        assert down.json()["status"] == "unavailable"
        assert "Registry database error" in down.json()["reason"]
        assert "does not exist" in down.json()["reason"]
        assert "\n" not in down.text and set(down.json()) == {"status", "reason"}
        assert client.get("/healthz").status_code == 200
        execute("CREATE DATABASE {db}")
        assert client.get("/readyz").json() == {"status": "ok", "database": "postgresql"}
