"""Run the adaptation service as a real ``bentoml serve`` process (CLI, tests, benchmarks).

:func:`serve_command` gives the command line and environment; :class:`ServiceProcess` starts
it, waits for ``/readyz`` and always terminates it (the whole process group). A
:class:`ServiceProcess` always takes feedback: it passes the configured
``serving.feedback_token``, or one made for the process, and tells its caller
(:attr:`ServiceProcess.feedback_headers`).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from metarec.config import Settings
from metarec.environment import MANAGED_MARKER, process_environment
from metarec.errors import ServingModelError

SERVICE_TARGET = "metarec.serving.service:AdaptationService"
# What BentoML (Starlette's lifespan) logs when the service's constructor raised.
STARTUP_FAILED = "Application startup failed"
FEEDBACK_TOKEN_ENV = "METAREC_SERVING__FEEDBACK_TOKEN"


def feedback_token_for(settings: Settings) -> str:
    """The configured ``serving.feedback_token``, else a new random one (for one run)."""
    configured = settings.serving.feedback_token
    return (configured.get_secret_value() if configured else "") or secrets.token_urlsafe(32)


def feedback_headers(token: str) -> dict[str, str]:
    """The headers of a trusted caller (``/feedback`` needs them).

    Only the answers to requests carrying them are remembered to score feedback against.
    """
    return {"authorization": f"Bearer {token}"}


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def service_bentoml_home(settings: Settings, *, host: str, port: int) -> Path:
    """The BentoML home of the service listening on ``host:port`` (metrics, logs, temp)."""
    return settings.paths.bentoml_home / "services" / f"{host}-{port}"


def serve_command(
    settings: Settings,
    *,
    version: str | None,
    stage: str | None = None,
    host: str,
    port: int,
    extra_env: Mapping[str, str] | None = None,
    feedback_token: str | None = None,
) -> tuple[list[str], dict[str, str]]:
    """The ``bentoml serve`` command line and environment for one version.

    Args:
        settings: MetaRec settings (home, registry, Feast, serving).
        version: Version to serve (``3``, ``v3``, ``<model>:v3``), or None for ``stage``.
        stage: Stage to serve when no version is given.
        host: Interface.
        port: Port.
        extra_env: More variables (e.g. ``METAREC_SERVING__MAX_BATCH_SIZE``).
        feedback_token: The bearer token ``/feedback`` requires (None: the settings' own).

    Returns:
        ``(argv, env)``.
    """
    env = dict(os.environ)
    env.update(process_environment(settings))
    env["METAREC_HOME"] = str(settings.paths.home)
    env["METAREC_FEAST__REPO_PATH"] = str(settings.feast.repo_path)
    env["METAREC_REGISTRY__MODEL_NAME"] = settings.registry.model_name
    if settings.registry.database_url:
        env["METAREC_REGISTRY__DATABASE_URL"] = settings.registry.database_url
    env["METAREC_REGISTRY__MIGRATE_ON_OPEN"] = str(settings.registry.migrate_on_open).lower()
    if settings.registry.artifact_root:
        env["METAREC_REGISTRY__ARTIFACT_ROOT"] = settings.registry.artifact_root
    env.pop("METAREC_SERVING__VERSION", None)
    if version:
        env["METAREC_SERVING__VERSION"] = str(version)
    if stage:
        env["METAREC_SERVING__STAGE"] = stage
    # BentoML wipes <BENTOML_HOME>/prometheus_multiproc_dir whenever a server starts, so two
    # services of one home (production and canary) would reset each other's metrics. Each port
    # gets its own BentoML home (the service loads its model from the registry, not from
    # BentoML's store), kept as if the user had set it.
    env["BENTOML_HOME"] = str(service_bentoml_home(settings, host=host, port=port))
    managed = [name for name in env.get(MANAGED_MARKER, "").split(",") if name]
    env[MANAGED_MARKER] = ",".join(name for name in managed if name != "BENTOML_HOME")
    env.update({FEEDBACK_TOKEN_ENV: feedback_token} if feedback_token else {})
    env.update(extra_env or {})
    argv = [
        sys.executable,
        "-m",
        "bentoml",
        "serve",
        SERVICE_TARGET,
        "--host",
        host,
        "--port",
        str(port),
    ]
    return argv, env


class ServiceProcess:
    """A ``bentoml serve`` child process of the adaptation service (a context manager)."""

    def __init__(
        self,
        settings: Settings,
        *,
        version: str | None = None,
        stage: str | None = None,
        host: str = "127.0.0.1",
        port: int | None = None,
        extra_env: Mapping[str, str] | None = None,
        log_path: Path | None = None,
        ready_timeout: float = 120.0,
        feedback_token: str | None = None,
    ) -> None:
        """Describe the process (nothing starts before :meth:`start`).

        Args:
            settings: MetaRec settings.
            version: Version to serve, or None for ``stage``.
            stage: Stage to serve when no version is given.
            host: Interface (127.0.0.1 by default).
            port: Port (default: a free one).
            extra_env: More environment variables.
            log_path: Where the process's output goes (default: discarded).
            ready_timeout: Seconds to wait for ``/readyz``.
            feedback_token: The bearer token ``/feedback`` requires (default: the settings',
                else one made for this process; :attr:`feedback_headers` carry it).
        """
        self.host = host
        self.port = port or free_port(host)
        given = feedback_token or (extra_env or {}).get(FEEDBACK_TOKEN_ENV)
        self.feedback_token = given or feedback_token_for(settings)
        self.argv, self.env = serve_command(
            settings,
            version=version,
            stage=stage,
            host=host,
            port=self.port,
            extra_env=extra_env,
            feedback_token=self.feedback_token,
        )
        self.log_path = log_path
        self.ready_timeout = ready_timeout
        self.process: subprocess.Popen[bytes] | None = None
        self._launched_at = 0.0

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:3000``."""
        return f"http://{self.host}:{self.port}"

    @property
    def feedback_headers(self) -> dict[str, str]:
        """The headers a ``/feedback`` request to this process needs."""
        return feedback_headers(self.feedback_token)

    def start(self) -> ServiceProcess:
        """Start the process and wait until ``/readyz`` answers 200.

        Raises:
            ServingModelError: The process exited or was not ready in time (log tail included).
        """
        return self.launch().wait_ready()

    def launch(self) -> ServiceProcess:
        """Start the process without waiting (start several, then :meth:`wait_ready` each)."""
        out = self.log_path.open("wb") if self.log_path else subprocess.DEVNULL
        self.process = subprocess.Popen(
            self.argv, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        self._launched_at = time.monotonic()
        return self

    def wait_ready(self) -> ServiceProcess:
        """Wait until ``/readyz`` answers 200 (``ready_timeout`` seconds after the launch).

        Raises:
            ServingModelError: The process exited or was not ready in time (log tail included).
        """
        if self.process is None:
            self.launch()
        assert self.process is not None
        deadline = self._launched_at + self.ready_timeout
        while time.monotonic() < deadline:
            if self._startup_failed():
                self.stop()
                raise ServingModelError(
                    f"The adaptation service failed to start.{self._log_tail()}",
                    fix="read the error above in the service log; check the version exists, "
                    "its artifact loads and features are materialised.",
                )
            if self.process.poll() is not None:
                self.stop()
                raise ServingModelError(
                    f"bentoml serve exited with code {self.process.returncode} before it was "
                    f"ready.{self._log_tail()}",
                    fix="read the service log; check the version exists and features are "
                    "materialised.",
                )
            try:
                with urllib.request.urlopen(f"{self.url}/readyz", timeout=2) as response:
                    if response.status == 200:
                        return self
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.25)
        self.stop()
        raise ServingModelError(
            f"bentoml serve was not ready within {self.ready_timeout:.0f} s.{self._log_tail()}",
            fix="read the service log; raise the timeout on a slow machine.",
        )

    def _startup_failed(self) -> bool:
        """BentoML logs a failed service start but keeps its process (and retries) alive."""
        return STARTUP_FAILED in self._read_log_tail(20_000)

    def _read_log_tail(self, size: int) -> str:
        """The last ``size`` bytes of the log ("" without one), read without the rest."""
        if not (self.log_path and self.log_path.is_file()):
            return ""
        with self.log_path.open("rb") as log:
            log.seek(max(0, log.seek(0, os.SEEK_END) - size))
            return log.read().decode(errors="replace")

    def _log_tail(self) -> str:
        tail = self._read_log_tail(2000)
        return f" Log tail:\n{tail}" if tail else ""

    def stop(self, timeout: float = 15.0) -> None:
        """Terminate the process group (SIGTERM, then SIGKILL)."""
        if self.process is None or self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=timeout)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=timeout)

    def __enter__(self) -> ServiceProcess:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()
