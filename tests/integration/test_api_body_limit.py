"""The API bounds the body and authenticates before it reads one: 413 unread, 401 before 422."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient
from metarec.api import create_app
from metarec.config import load_settings

pytestmark = pytest.mark.integration

TOKEN = "body-limit-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
LIMIT = 4096
HUGE = str(30 * 1024 * 1024)  # 30 MiB declared, never sent
MUTATING = [
    "/models/metarec/versions",
    "/models/metarec/versions/1/promote",
    "/models/metarec/versions/1/archive",
    "/models/metarec/rollback",
    "/gate",
    "/flagger/promote",
    "/flagger/confirm-promotion",
    "/flagger/rollback",
]


def make_app(tmp_path: Path, **registry: Any) -> FastAPI:
    settings = load_settings(
        home=tmp_path / "home",
        registry={"api_token": TOKEN, "export_bentoml": False, "api_max_body_bytes": LIMIT}
        | registry,
    )
    return create_app(settings)


@pytest.fixture
def app(tmp_path: Path) -> FastAPI:
    return make_app(tmp_path)


def call(app: FastAPI, path: str, headers: dict[str, str], chunks: Any) -> tuple[int, int]:
    """One POST through the app; the body is ``chunks``, then never ends (the client stalls).

    Returns the status answered and how many times the app asked for the body. Fails when
    the app waits for the body instead of answering (5 s).
    """
    asked = 0
    sent: list[dict[str, Any]] = []
    source = iter(chunks)

    async def receive() -> dict[str, Any]:
        nonlocal asked
        asked += 1
        await asyncio.sleep(0)  # a real client's bytes take time: the timeout can fire
        chunk = next(source, None)
        if chunk is None:
            await asyncio.Event().wait()  # the rest never comes
        return {"type": "http.request", "body": chunk, "more_body": True}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8000),
    }
    asyncio.run(asyncio.wait_for(app(scope, receive, send), timeout=5))
    return sent[0]["status"], asked


@pytest.mark.parametrize("path", MUTATING)
@pytest.mark.parametrize("headers", [AUTH, {}], ids=["token", "no-token"])
def test_a_declared_length_over_the_limit_is_413_without_reading_the_body(app, path, headers):
    status, asked = call(app, path, {**headers, "content-length": HUGE}, [b'{"reason": "'])
    assert (status, asked) == (413, 0)


@pytest.mark.parametrize("path", MUTATING)
def test_a_call_without_a_valid_token_is_401_without_reading_the_body(app, path):
    for headers in ({"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}):
        status, asked = call(app, path, {**headers, "content-length": "100"}, [b'{"reason'])
        assert (status, asked) == (401, 0)
    if not path.startswith("/flagger/"):  # a webhook's token may be in its (bounded) body
        assert call(app, path, {"content-length": "100"}, [b"{"]) == (401, 0)


def test_a_chunked_body_is_cut_at_the_limit(app):
    def chunked() -> Iterator[bytes]:  # 64 KiB without a length, then the client stalls
        return (b"x" * 1024 for _ in range(64))

    status, asked = call(app, "/models/metarec/rollback", AUTH, chunked())
    assert (status, asked) == (413, LIMIT // 1024 + 1)
    webhook, asked = call(app, "/flagger/promote", {}, chunked())
    assert (webhook, asked) == (413, LIMIT // 1024 + 1)


def test_a_content_length_that_is_not_a_number_is_400(app):
    for value in ("-1", "abc", "1e3"):
        assert call(app, "/models/metarec/rollback", {**AUTH, "content-length": value}, []) == (
            400,
            0,
        )


@pytest.mark.parametrize("path", MUTATING)
def test_401_comes_before_422(app, path):
    with TestClient(app) as client:
        for body in (b"{not json", b'{"metadata": {"token": 1}', b"\xff\xfe", b"[]"):
            headers = {"content-type": "application/json"}
            response = client.post(path, content=body, headers=headers)
            assert response.status_code == 401, (body, response.json())
            assert response.json()["error"] == "AuthError"
        malformed = client.post(path, content=b"{not json", headers={**AUTH, **headers})
        assert malformed.status_code == 422


def test_a_body_within_the_limit_is_handed_to_the_route_intact(tmp_path):
    app = make_app(tmp_path)
    reason = "r" * (LIMIT - 100)
    with TestClient(app) as client:
        response = client.post("/models/metarec/rollback", json={"reason": reason}, headers=AUTH)
        assert response.status_code == 404  # read and validated; the model does not exist
        too_long = client.post(
            "/models/metarec/rollback", json={"reason": reason + "x" * 200}, headers=AUTH
        )
        assert too_long.status_code == 413 and too_long.json()["error"] == "ApiRequestError"


@pytest.fixture
def server(app: FastAPI) -> Iterator[tuple[str, int]]:
    """The app served by uvicorn on 127.0.0.1 (a real HTTP server, real sockets)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, log_level="warning", lifespan="off")
    running = uvicorn.Server(config)
    thread = threading.Thread(target=running.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not running.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield sock.getsockname()
    finally:
        running.should_exit = True
        thread.join(timeout=10)
        sock.close()


def exchange(address: tuple[str, int], head: str, body: bytes) -> bytes:
    """Send a request head and part of a body; the first bytes of the answer (5 s at most)."""
    with socket.create_connection(address, timeout=5) as conn:
        conn.sendall(head.replace("\n", "\r\n").encode() + b"\r\n" + body)
        return conn.recv(4096)


def test_a_real_server_answers_at_once_and_never_waits_for_the_body(server):
    post = "POST /models/metarec/rollback HTTP/1.1\nHost: api\nContent-Type: application/json\n"
    started = time.monotonic()
    huge = exchange(server, f"{post}Authorization: Bearer {TOKEN}\nContent-Length: {HUGE}\n", b"{")
    assert huge.startswith(b"HTTP/1.1 413")
    anonymous = exchange(server, f"{post}Content-Length: 1000\n", b'{"reason": "')
    assert anonymous.startswith(b"HTTP/1.1 401")
    chunks = b"400\r\n" + b"x" * 1024 + b"\r\n"
    chunked = exchange(
        server, f"{post}Authorization: Bearer {TOKEN}\nTransfer-Encoding: chunked\n", chunks * 5
    )
    assert chunked.startswith(b"HTTP/1.1 413")
    assert time.monotonic() - started < 5
