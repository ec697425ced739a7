"""A real S3-compatible HTTP server for the tests: moto's server mode, in its own process.

The server listens on 127.0.0.1 on a free port for the whole session, with one bucket. The code
under test reaches it exactly as a pod of the chart reaches its object store: ``s3fs`` (through
``fsspec``) configured by the environment the chart sets (``AWS_ENDPOINT_URL``, the access key
pair, ``AWS_DEFAULT_REGION``), which botocore honours (a service-specific
``AWS_ENDPOINT_URL_S3`` would win over ``AWS_ENDPOINT_URL``); nothing in ``s3fs`` or ``boto`` is
patched.

Fixtures (defined once for every folder in ``tests/conftest.py``):

- ``s3_server``: the running server (session scope).
- ``s3``: per test, the server's environment applied to this process, and a fresh prefix of the
  bucket (``s3.url("a/b")`` → ``s3://<bucket>/<prefix>/a/b``).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

BUCKET = "metarec-tests"
_START_TIMEOUT_S = 60.0
# Variables that would take precedence over the test's own, or point at a real account.
_CLEARED = ("AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "AWS_SESSION_TOKEN")


@dataclass(frozen=True)
class S3Server:
    """A running S3-compatible server and the environment that points clients at it."""

    endpoint_url: str
    bucket: str

    @property
    def env(self) -> dict[str, str]:
        """The environment a pod of the chart gets for this store (``externalS3`` + Secret)."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": "metarec-test",
            "AWS_SECRET_ACCESS_KEY": "metarec-test-secret",
            "AWS_DEFAULT_REGION": "us-east-1",
        }


@dataclass(frozen=True)
class S3Prefix:
    """A test's own prefix in the bucket, with the server's environment applied."""

    server: S3Server
    prefix: str

    @property
    def root(self) -> str:
        """``s3://<bucket>/<prefix>``."""
        return f"s3://{self.server.bucket}/{self.prefix}"

    def url(self, *parts: str) -> str:
        """``s3://<bucket>/<prefix>/<parts…>``."""
        return "/".join([self.root, *parts])

    def filesystem(self) -> Any:
        """A fresh ``s3fs`` file system (no instance or listing cache), from the environment."""
        import fsspec

        return fsspec.filesystem("s3", skip_instance_cache=True, use_listings_cache=False)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_until_up(endpoint: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + _START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"moto server exited with {process.returncode} before answering")
        try:
            with urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=2):
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.2)
    raise RuntimeError(f"moto server did not answer at {endpoint} in {_START_TIMEOUT_S:.0f}s")


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """moto's S3 server on 127.0.0.1 (own process, free port) with the bucket created."""
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_until_up(endpoint, process)
        server = S3Server(endpoint_url=endpoint, bucket=BUCKET)
        _create_bucket(server)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _create_bucket(server: S3Server) -> None:
    import fsspec

    saved = {name: os.environ.get(name) for name in (*server.env, *_CLEARED)}
    for name in _CLEARED:
        os.environ.pop(name, None)
    os.environ.update(server.env)
    try:
        fsspec.filesystem("s3", skip_instance_cache=True).mkdir(server.bucket)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.fixture
def s3(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Prefix]:
    """The server's environment in this process and a fresh prefix of the bucket.

    s3fs's cached instances (and their listing caches) are dropped before and after: an instance
    made under another test's environment never serves this one.
    """
    import s3fs

    for name in _CLEARED:
        monkeypatch.delenv(name, raising=False)
    for name, value in s3_server.env.items():
        monkeypatch.setenv(name, value)
    s3fs.S3FileSystem.clear_instance_cache()
    yield S3Prefix(server=s3_server, prefix=f"t-{uuid.uuid4().hex[:12]}")
    s3fs.S3FileSystem.clear_instance_cache()
