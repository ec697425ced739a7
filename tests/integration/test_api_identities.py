"""Named API identities: tokens map to identities with roles; the ledger's actor is the identity."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from metarec.api import create_app
from metarec.api.identities import IdentityBook, Role, load_identities
from metarec.config import load_settings
from metarec.errors import ConfigError
from metarec.testing.registry import write_fixture_artifact

pytestmark = pytest.mark.integration

TOKENS = {
    "ci": "ci-token-0123456789abcdef",
    "rollout": "rollout-token-0123456789",
    "flagger": "flagger-token-0123456789",
    "auditor": "auditor-token-0123456789",
}
SPECS: dict[str, dict[str, Any]] = {
    "ci": {"roles": ["reader", "deployer"]},
    "rollout": {"role": "controller"},
    "flagger": {"role": "flagger"},
    "auditor": {"roles": ["reader"]},
}
LEGACY = "legacy-shared-token"


def auth(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[name]}"}


def write_tokens(path: Path, tokens: dict[str, str], *, hashed: tuple[str, ...] = ("ci",)) -> Path:
    """A tokens file; the identities in ``hashed`` are given by the SHA-256 of their token."""
    entries = {}
    for name, token in tokens.items():
        secret = (
            {"token_sha256": hashlib.sha256(token.encode()).hexdigest()}
            if name in hashed
            else {"token": token}
        )
        entries[name] = {**SPECS[name], **secret}
    scratch = path.with_suffix(".new")
    scratch.write_text(yaml.safe_dump(entries))
    os.replace(scratch, path)  # a new file, as a Secret volume update swaps it
    return path


def make_client(tmp_path: Path, **registry: Any) -> Iterator[TestClient]:
    settings = load_settings(home=tmp_path / "home", registry={"export_bentoml": False, **registry})
    with TestClient(create_app(settings)) as client:
        yield client


@pytest.fixture
def tokens_file(tmp_path: Path) -> Path:
    return write_tokens(tmp_path / "tokens.yaml", TOKENS)


@pytest.fixture
def client(tmp_path: Path, tokens_file: Path) -> Iterator[TestClient]:
    yield from make_client(tmp_path, api_tokens_file=str(tokens_file))


def register(client: TestClient, tmp_path: Path, number: int, **body: Any) -> None:
    artifact = write_fixture_artifact(tmp_path / f"a{number}", seed=number, mae=0.8 - number / 100)
    created = client.post(
        "/models/metarec/versions", json={"artifact": str(artifact), **body}, headers=auth("ci")
    )
    assert created.status_code == 201, created.json()


def test_the_ledger_actor_is_the_identity_never_the_body(client, tmp_path):
    register(client, tmp_path, 1, actor="mallory")
    register(client, tmp_path, 2)
    promoted = client.post(
        "/models/metarec/versions/1/promote",
        json={"reason": "canary passed", "actor": "someone-else", "evidence": {"run": "r7"}},
        headers=auth("rollout"),
    )
    assert promoted.status_code == 200, promoted.json()
    archived = client.post(
        "/models/metarec/versions/2/archive", json={"reason": "withdrawn"}, headers=auth("ci")
    )
    assert archived.status_code == 200
    entries = client.get("/models/metarec/history").json()
    assert [(e["action"], e["actor"]) for e in entries] == [
        ("register", "ci"),
        ("register", "ci"),
        ("promote", "rollout"),
        ("archive", "ci"),
    ]
    assert entries[2]["evidence"]["run"] == "r7"
    assert "mallory" not in json.dumps(entries) and "someone-else" not in json.dumps(entries)
    assert client.get("/models/metarec/versions/1").json()["created_by"] == "ci"


@pytest.mark.parametrize(
    ("who", "method", "path", "body", "role"),
    [
        ("auditor", "post", "/models/metarec/versions/1/promote", {"reason": "r"}, "'deployer'"),
        ("flagger", "post", "/models/metarec/rollback", {"reason": "r"}, "'controller'"),
        ("rollout", "post", "/models/metarec/versions", {"artifact": "/x"}, "'deployer'"),
        ("rollout", "post", "/gate", {"artifact": "/x"}, "'deployer'"),
        (
            "ci",
            "post",
            "/flagger/promote",
            {"name": "c", "namespace": "n", "phase": "Succeeded"},
            "'flagger'",
        ),
    ],
)
def test_a_missing_role_is_403_naming_it_and_changes_nothing(
    client, tmp_path, who, method, path, body, role
):
    register(client, tmp_path, 1)
    before = client.get("/models/metarec/history").json()
    response = getattr(client, method)(path, json=body, headers=auth(who))
    assert response.status_code == 403, response.json()
    assert response.json()["error"] == "ApiForbiddenError"
    assert f"'{who}'" in response.json()["problem"] and role in response.json()["problem"]
    assert "www-authenticate" not in response.headers
    assert client.get("/models/metarec/history").json() == before


def test_reads_need_a_reader_identity_when_required(tmp_path, tokens_file):
    for client in make_client(tmp_path, api_tokens_file=str(tokens_file), read_requires_token=True):
        assert client.get("/models").status_code == 401
        assert client.get("/models", headers=auth("auditor")).status_code == 200
        refused = client.get("/models", headers=auth("flagger"))
        assert refused.status_code == 403 and "'reader'" in refused.json()["problem"]
        assert client.get("/healthz").status_code == 200  # probes stay open


def test_the_deprecated_single_token_is_one_identity_with_every_role(tmp_path, tokens_file):
    legacy = {"Authorization": f"Bearer {LEGACY}"}
    settings = {"api_token": LEGACY, "api_tokens_file": str(tokens_file)}
    for client in make_client(tmp_path, read_requires_token=True, **settings):
        artifact = write_fixture_artifact(tmp_path / "a1", seed=1)
        created = client.post(
            "/models/metarec/versions", json={"artifact": str(artifact)}, headers=legacy
        )
        assert created.status_code == 201
        webhook = {
            "name": "c",
            "namespace": "n",
            "phase": "Succeeded",
            "metadata": {"version": "metarec:v1", "token": LEGACY},
        }
        assert client.post("/flagger/promote", json=webhook).json()["action"] == "promoted"
        entries = client.get("/models/metarec/history", headers=legacy).json()
        assert [e["actor"] for e in entries] == ["api-token", "api-token"]
        assert LEGACY not in json.dumps(entries)
        assert client.get("/models", headers=auth("auditor")).status_code == 200  # both work


def test_tokens_rotate_when_the_file_changes(client, tokens_file):
    assert (
        client.post(
            "/models/metarec/rollback", json={"reason": "r"}, headers=auth("ci")
        ).status_code
        == 404
    )  # authorised: no such model
    rotated = {**TOKENS, "ci": "ci-token-rotated-9876543210"}
    write_tokens(tokens_file, rotated)
    old = client.post("/models/metarec/rollback", json={"reason": "r"}, headers=auth("ci"))
    assert old.status_code == 401
    new = client.post(
        "/models/metarec/rollback",
        json={"reason": "r"},
        headers={"Authorization": f"Bearer {rotated['ci']}"},
    )
    assert new.status_code == 404

    tokens_file.write_text("ci: {role: deployer}\n")  # broken: no token; fails closed
    broken = client.post(
        "/models/metarec/rollback",
        json={"reason": "r"},
        headers={"Authorization": f"Bearer {rotated['ci']}"},
    )
    assert broken.status_code == 503 and "'ci'" in broken.json()["problem"]
    write_tokens(tokens_file, rotated)
    assert (
        client.post(
            "/models/metarec/rollback",
            json={"reason": "r"},
            headers={"Authorization": f"Bearer {rotated['ci']}"},
        ).status_code
        == 404
    )


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("ci: {role: deployer, token: short}", "16 to 4096 characters"),
        ("ci: {role: deployer}", "exactly one of token_sha256 and token"),
        (f"ci: {{token: {TOKENS['ci']}}}", "give its role"),
        (f"ci: {{role: admin, token: {TOKENS['ci']}}}", "'ci.role'"),
        (f"ci: {{role: reader, token: {TOKENS['ci']}, extra: 1}}", "'ci.extra'"),
        (
            f"a: {{role: reader, token: {TOKENS['ci']}}}\nb: {{role: flagger, "
            f"token: {TOKENS['ci']}}}",
            "'a' and 'b' share a token",
        ),
        (f"api-token: {{role: reader, token: {TOKENS['ci']}}}", "reserved"),
        ("ci: [unclosed", "cannot be read"),
    ],
)
def test_an_invalid_tokens_file_is_refused_at_start_without_echoing_a_token(
    tmp_path, content, problem
):
    path = tmp_path / "tokens.yaml"
    path.write_text(content)
    settings = load_settings(home=tmp_path, registry={"api_tokens_file": str(path)})
    with pytest.raises(ConfigError) as raised:
        create_app(settings)
    assert problem in raised.value.problem
    assert TOKENS["ci"] not in str(raised.value)


def test_identities_are_compared_by_digest(tmp_path, tokens_file):
    book = IdentityBook(legacy_token=None, tokens_file=tokens_file)
    assert book.authenticate(TOKENS["ci"].encode()).name == "ci"
    assert book.authenticate(TOKENS["flagger"].encode()).roles == frozenset({Role.FLAGGER})
    assert book.authenticate(hashlib.sha256(TOKENS["ci"].encode()).hexdigest().encode()) is None
    assert book.authenticate(b"") is None
    assert set(load_identities(tokens_file)) == {
        hashlib.sha256(token.encode()).digest() for token in TOKENS.values()
    }
