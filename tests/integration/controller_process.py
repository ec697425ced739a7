"""A real `metarec rollout controller` process for the restart tests (loaded by file path)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path


def start_controller(env_overrides: dict[str, str], log: Path) -> subprocess.Popen:
    """Start `metarec rollout controller` with these variables, output appended to ``log``."""
    env = {**os.environ, "METAREC_REGISTRY__EXPORT_BENTOML": "false", **env_overrides}
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from metarec.cli.main import main; main()",
            "rollout",
            "controller",
        ],
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop_controller(process: subprocess.Popen, sig: int = signal.SIGTERM) -> int:
    """Send ``sig`` to the process group; SIGKILL after 20 s. Returns the exit code."""
    if process.poll() is None:
        os.killpg(process.pid, sig)
    try:
        return process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        return process.wait(timeout=20)
