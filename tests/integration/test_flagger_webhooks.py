"""Flagger's webhooks replayed against the control-plane API with a real SQLite registry.

The payloads in ``tests/fixtures/flagger/`` are shaped exactly as Flagger sends them; the
sequences there are the calls one canary rollout makes (see that folder's README).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from metarec.api import create_app
from metarec.config import load_settings
from metarec.registry.schema import VersionRow
from metarec.testing.registry import postgres_schema, write_fixture_artifact
from sqlalchemy import update

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "flagger"
TOKEN = "flagger-webhook-token"  # the flagger identity's (the fixtures' metadata.token)
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CI_TOKEN = "ci-deployer-token-0123"
CI_AUTH = {"Authorization": f"Bearer {CI_TOKEN}"}
IDENTITIES = {
    "flagger": {"role": "flagger", "token": TOKEN},
    "ci": {"roles": ["reader", "deployer"], "token": CI_TOKEN},
}
PATHS = ["/flagger/confirm-promotion", "/flagger/promote", "/flagger/rollback"]


def payload(name: str, **metadata: str | None) -> dict[str, Any]:
    """A recorded payload; ``metadata`` entries replace (None: remove) the recorded ones."""
    body = json.loads((FIXTURES / name).read_text())
    for key, value in metadata.items():
        if value is None:
            body["metadata"].pop(key, None)
        else:
            body["metadata"][key] = value
    return body


def replay(client: TestClient, sequence: str) -> list[dict[str, Any]]:
    """Send a recorded sequence; check each status; return the answers."""
    answers = []
    for call in json.loads((FIXTURES / sequence).read_text()):
        response = client.post(call["path"], json=payload(call["payload"]))
        assert response.status_code == call["status"], (call, response.json())
        answers.append(response.json())
    return answers


@pytest.fixture
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str | None]:
    """The registry database: SQLite in the home (default) or a fresh PostgreSQL schema."""
    if getattr(request, "param", "sqlite") == "sqlite":
        yield None
        return
    try:
        url, drop = postgres_schema()
    except OSError as exc:
        print(f"SKIP reason: {exc}")
        pytest.skip(str(exc))
    try:
        yield url
    finally:
        drop()


@pytest.fixture
def client(tmp_path: Path, database: str | None) -> Iterator[TestClient]:
    """The API over a registry with v1 in production and v2 (gated) in staging.

    Two identities: ``flagger`` (role flagger, the webhooks) and ``ci`` (deployer).
    """
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps(IDENTITIES))
    registry = {"api_tokens_file": str(tokens), "export_bentoml": False, "database_url": database}
    settings = load_settings(home=tmp_path / "home", registry=registry)
    with TestClient(create_app(settings)) as api:
        for number, (seed, mae) in enumerate([(1, 0.80), (2, 0.77)], start=1):
            artifact = write_fixture_artifact(tmp_path / f"a{number}", seed=seed, mae=mae)
            created = api.post(
                "/models/metarec/versions", json={"artifact": str(artifact)}, headers=CI_AUTH
            )
            assert created.status_code == 201, created.json()
            if number == 1:
                promoted = api.post(
                    "/models/metarec/versions/1/promote", json={"reason": "first"}, headers=CI_AUTH
                )
                assert promoted.status_code == 200
        yield api


def stages(client: TestClient) -> dict[int, str]:
    versions = client.get("/models/metarec/versions").json()
    return {v["version"]: v["stage"] for v in versions}


def history(client: TestClient) -> list[dict[str, Any]]:
    return client.get("/models/metarec/history").json()


BOTH_DATABASES = pytest.mark.parametrize("database", ["sqlite", "postgresql"], indirect=True)


@BOTH_DATABASES
def test_succeeded_rollout_promotes_the_version_with_the_webhook_as_evidence(client):
    before = len(history(client))
    answers = replay(client, "succeeded-rollout.json")

    assert [a["action"] for a in answers] == [
        "confirmed",
        "confirmed",
        "no-rollback",
        "promoted",
        "ignored",
    ]
    assert stages(client) == {1: "archived", 2: "production"}
    entries = history(client)[before:]
    assert [(e["action"], e["version"], e["actor"]) for e in entries] == [
        ("archive", 1, "flagger"),
        ("promote", 2, "flagger"),
    ]
    evidence = entries[1]["evidence"]
    assert evidence["source"] == "flagger" and evidence["hook"] == "post-rollout"
    assert evidence["previous_production"] == "metarec:v1"
    assert evidence["webhook"] == {
        "name": "metarec-serving",
        "namespace": "metarec",
        "phase": "Succeeded",
        "checksum": "5d8f7c9b46",
        "metadata": {"model": "metarec", "version": "metarec:v2"},
    }
    assert TOKEN not in json.dumps(history(client))
    assert "metarec/metarec-serving" in entries[1]["reason"]

    # Flagger may call again (a retry, a second post-rollout hook): nothing more is written.
    again = client.post("/flagger/promote", json=payload("post-rollout-succeeded.json"))
    assert again.status_code == 200 and again.json()["action"] == "already-production"
    assert len(history(client)) == before + 2


@BOTH_DATABASES
def test_failed_rollout_leaves_production_unchanged(client):
    before = len(history(client))
    answers = replay(client, "failed-rollout.json")

    assert [a["action"] for a in answers] == ["confirmed", "no-rollback", "ignored", "archived"]
    assert stages(client) == {1: "production", 2: "archived"}
    assert client.get("/models/metarec/production").json()["version"] == 1
    entries = history(client)[before:]
    assert [(e["action"], e["version"], e["actor"]) for e in entries] == [("archive", 2, "flagger")]
    assert entries[0]["evidence"]["rolled_back"] is True
    assert entries[0]["evidence"]["webhook"]["phase"] == "Failed"

    again = client.post("/flagger/rollback", json=payload("post-rollout-failed.json"))
    assert again.status_code == 200 and again.json()["action"] == "already-archived"
    # A rolled-back version is refused from then on: not promoted even if Flagger says so.
    refused = client.post("/flagger/promote", json=payload("post-rollout-succeeded.json"))
    assert refused.status_code == 409 and refused.json()["action"] == "refused"
    assert stages(client) == {1: "production", 2: "archived"}
    assert len(history(client)) == before + 1


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(
    ("token", "headers"),
    [
        (None, {}),
        ("wrong", {}),
        (None, {"Authorization": "Bearer wrong"}),
        (TOKEN, {"Authorization": "Bearer wrong"}),  # a header, when sent, is what counts
    ],
    ids=["none", "wrong-metadata", "wrong-header", "wrong-header-right-metadata"],
)
def test_unauthenticated_webhooks_get_401_and_change_nothing(client, path, token, headers):
    before = history(client)
    body = payload("post-rollout-succeeded.json", token=token)
    response = client.post(path, json=body, headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["error"] == "AuthError"
    # Checked before the body: an invalid body without a token is 401 too, not 422.
    assert client.post(path, json={"metadata": {}}).status_code == 401
    malformed = client.post(
        path, content=b'{"metadata": {"tok', headers={"content-type": "application/json"}
    )
    assert malformed.status_code == 401
    assert stages(client) == {1: "production", 2: "staging"}
    assert history(client) == before


def test_the_token_may_come_as_a_bearer_header(client):
    body = payload("post-rollout-succeeded.json", token=None)
    response = client.post("/flagger/promote", json=body, headers=AUTH)
    assert response.status_code == 200 and response.json()["action"] == "promoted"


@pytest.mark.parametrize("path", PATHS)
def test_a_token_without_the_flagger_role_is_refused_and_changes_nothing(client, path):
    before = history(client)
    for body, headers in [
        (payload("post-rollout-succeeded.json", token=CI_TOKEN), {}),
        (payload("post-rollout-succeeded.json", token=None), CI_AUTH),
    ]:
        response = client.post(path, json=body, headers=headers)
        assert response.status_code == 403
        assert response.json()["error"] == "ApiForbiddenError"
        assert "'ci' lacks the role 'flagger'" in response.json()["problem"]
    assert stages(client) == {1: "production", 2: "staging"}
    assert history(client) == before


def test_flagger_may_not_call_the_other_mutating_routes(client):
    for path in ["/models/metarec/versions/2/promote", "/models/metarec/rollback"]:
        response = client.post(path, json={"reason": "r"}, headers=AUTH)
        assert response.status_code == 403 and "'flagger' lacks" in response.json()["problem"]
    assert stages(client) == {1: "production", 2: "staging"}


def test_confirm_promotion_refuses_a_version_without_a_passing_gate_decision(client):
    engine = client.app.state.registry.engine
    with engine.begin() as connection:  # a version registered before the gate existed
        connection.execute(
            update(VersionRow).where(VersionRow.version == 2).values(gate_decision=None)
        )
    confirm = client.post("/flagger/confirm-promotion", json=payload("confirm-promotion.json"))
    assert confirm.status_code == 403
    assert confirm.json() == {
        "action": "denied",
        "version": "metarec:v2",
        "stage": "staging",
        "reason": "metarec:v2 has no passing gate decision in the registry",
    }
    # As a rollback hook the same verdict asks Flagger to roll back; promote refuses it.
    assert client.post("/flagger/rollback", json=payload("rollback.json")).status_code == 200
    refused = client.post("/flagger/promote", json=payload("post-rollout-succeeded.json"))
    assert refused.status_code == 409
    assert stages(client) == {1: "production", 2: "staging"}


@pytest.mark.parametrize(
    ("version", "reason"),
    [
        ("metarec:v9", "metarec:v9 is not in the registry"),
        (None, "does not name the version under canary"),
        ("not-a-version", "is not a model version"),
        ("v0", "names an invalid version 'v0'"),
    ],
)
def test_confirm_promotion_refuses_unknown_or_unnamed_versions(client, version, reason):
    body = payload("confirm-promotion.json", version=version)
    response = client.post("/flagger/confirm-promotion", json=body)
    assert response.status_code == 403
    assert reason in response.json()["reason"]
    # The rollback hook asks for a rollback exactly when confirm-promotion refuses.
    rollback = client.post("/flagger/rollback", json=payload("rollback.json", version=version))
    assert rollback.status_code == 200 and rollback.json()["action"] == "rollback-requested"
    # Post-rollout: the other outcome's hook ignores it; its own cannot move an unknown version.
    failed = payload("post-rollout-failed.json", version=version)
    succeeded = payload("post-rollout-succeeded.json", version=version)
    assert client.post("/flagger/promote", json=failed).json()["action"] == "ignored"
    assert client.post("/flagger/rollback", json=succeeded).json()["action"] == "ignored"
    assert client.post("/flagger/promote", json=succeeded).status_code == 404
    assert client.post("/flagger/rollback", json=failed).status_code == 404
    assert stages(client) == {1: "production", 2: "staging"}


def test_confirm_promotion_refuses_an_archived_version(client):
    archived = client.post(
        "/models/metarec/versions/2/archive", json={"reason": "withdrawn"}, headers=CI_AUTH
    )
    assert archived.status_code == 200
    response = client.post("/flagger/confirm-promotion", json=payload("pre-rollout.json"))
    assert response.status_code == 403 and "archived" in response.json()["reason"]
    rollback = client.post("/flagger/rollback", json=payload("rollback.json"))
    assert rollback.status_code == 200 and rollback.json()["action"] == "rollback-requested"


def test_a_canary_of_the_production_version_is_not_archived_on_failure(client):
    body = payload("post-rollout-failed.json", version="metarec:v1")
    response = client.post("/flagger/rollback", json=body)
    assert response.status_code == 409 and response.json()["action"] == "refused"
    assert stages(client) == {1: "production", 2: "staging"}


def test_webhooks_are_in_the_openapi_document(client):
    paths = client.get("/openapi.json").json()["paths"]
    assert set(PATHS) <= set(paths)
