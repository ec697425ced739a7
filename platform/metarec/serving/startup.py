"""A service worker that cannot start ends the whole server (``metarec serve``).

BentoML runs the service in worker processes under its arbiter (circus). A worker whose
service constructor raises exits, and the arbiter starts it again, forever (inside a container
it is not restarted, and the arbiter stays up): the port stays open and nothing answers.
``metarec serve`` therefore runs ``bentoml serve`` as its child (:func:`supervise`) with
:data:`STARTUP_FAILURE_ENV` naming a file; a worker that cannot build its service writes one
line there and exits at once (:func:`exit_if_supervised`); the supervisor sees the line, stops
the server's whole process group and fails with that line. Without the variable (plain
``bentoml serve``, :class:`~metarec.serving.process.ServiceProcess`) the worker raises as
before and BentoML logs the failure.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from metarec.errors import MetaRecError, ServingModelError

STARTUP_FAILURE_ENV = "METAREC_STARTUP_FAILURE_FILE"
WORKER_EXIT_CODE = 3  # what uvicorn exits with when an application fails to start
_FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_PR_SET_PDEATHSIG = 1  # prctl(2): the signal a process gets when its parent dies
_FAILURE_FIX = (
    "check the version's artifact, the Feast repository and that features are materialised "
    "(`metarec features materialize`), then serve again."
)


def one_line(text: str, *, limit: int = 400) -> str:
    """``text`` on one line (whitespace collapsed), cut at ``limit`` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def startup_failure(exc: BaseException) -> ServingModelError:
    """Why the service could not start, as one-line problem and fix."""
    if isinstance(exc, MetaRecError):
        problem, fix = exc.problem, exc.fix
    else:
        problem, fix = f"{type(exc).__name__}: {exc}", _FAILURE_FIX
    return ServingModelError(
        one_line(f"The adaptation service's worker could not start: {problem}"),
        fix=one_line(fix),
    )


def exit_if_supervised(exc: BaseException) -> None:
    """In a worker supervised by ``metarec serve``: report ``exc`` in one line and exit now.

    Writes the line to the file :data:`STARTUP_FAILURE_ENV` names (atomically: a supervisor
    never reads half a line) and ends the worker without BentoML's traceback and retries.
    Without the variable, returns (the caller re-raises).
    """
    target = os.environ.get(STARTUP_FAILURE_ENV)
    if not target:
        return
    path = Path(target)
    partial = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    with contextlib.suppress(OSError):
        failure = startup_failure(exc)
        partial.write_text(json.dumps({"problem": failure.problem, "fix": failure.fix}))
        partial.replace(path)
    sys.stderr.flush()
    os._exit(WORKER_EXIT_CODE)


def _end_with_parent() -> None:
    """Have the kernel SIGTERM the server when ``metarec serve`` dies (Linux).

    Runs in the server's process before it execs; covers a SIGKILL too, which no handler sees.
    """
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM))


def _stop_group(process: subprocess.Popen[bytes], *, timeout: float) -> None:
    """SIGTERM the process group, then SIGKILL it if it has not ended within ``timeout``."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout=timeout)
            return
        except subprocess.TimeoutExpired:
            continue


@contextlib.contextmanager
def _forwarding_signals(process: subprocess.Popen[bytes]) -> Iterator[None]:
    """Forward Ctrl-C, SIGTERM and SIGHUP to the server's process group while it runs."""

    def forward(signum: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signum)

    previous = {sig: signal.signal(sig, forward) for sig in _FORWARDED}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def supervise(
    argv: Sequence[str],
    env: Mapping[str, str],
    *,
    poll_seconds: float = 0.2,
    stop_timeout: float = 15.0,
) -> int:
    """Run the server ``argv`` until it exits; stop it when a worker cannot start.

    The server runs in a process group of its own; signals this process receives are passed
    on to it, so Ctrl-C and a supervisor's SIGTERM stop it as before, and it is sent SIGTERM
    if this process dies (Linux).

    Args:
        argv: The ``bentoml serve`` command line (:func:`~metarec.serving.process.serve_command`).
        env: Its environment (:data:`STARTUP_FAILURE_ENV` is added).
        poll_seconds: How often the failure file is checked.
        stop_timeout: Seconds to wait after SIGTERM before SIGKILL.

    Returns:
        The server's exit code once it ended on its own (or by a forwarded signal).

    Raises:
        ServingModelError: A worker could not start (its one line; the server is stopped).
    """
    with tempfile.TemporaryDirectory(prefix="metarec-serve-") as tmp:
        failure = Path(tmp) / "startup-failure"
        child_env = {**env, STARTUP_FAILURE_ENV: str(failure)}
        process = subprocess.Popen(
            list(argv), env=child_env, start_new_session=True, preexec_fn=_end_with_parent
        )
        with _forwarding_signals(process):
            try:
                while process.poll() is None and not failure.is_file():
                    time.sleep(poll_seconds)
            finally:  # a worker failed, or interrupted here: never leave the server behind
                if process.poll() is None:
                    _stop_group(process, timeout=stop_timeout)
        if failure.is_file():
            reported = json.loads(failure.read_text())
            raise ServingModelError(reported["problem"], fix=reported["fix"])
    return process.returncode
