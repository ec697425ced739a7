"""`metarec serve`'s supervision: a worker that cannot start ends the whole server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid

import pytest
from metarec.errors import FeatureStoreError, ServingModelError
from metarec.serving.startup import (
    STARTUP_FAILURE_ENV,
    WORKER_EXIT_CODE,
    startup_failure,
    supervise,
)

# A stand-in for `bentoml serve`: an arbiter that starts a "worker" in its process group; the
# worker fails to start (exit_if_supervised, as the service's constructor calls it) and the
# arbiter restarts it forever, as BentoML does.
ARBITER = """
import subprocess, sys, time
worker = [sys.executable, "-c", sys.argv[1]]
while True:
    subprocess.run(worker)
    time.sleep(0.2)
"""
FAILING_WORKER = """
from metarec.errors import FeatureStoreError
from metarec.serving.startup import exit_if_supervised
exit_if_supervised(FeatureStoreError("feature_store.yaml not found.", fix="set the repo path."))
raise SystemExit("not supervised")
"""


def _processes_with(marker: str) -> list[str]:
    ps = subprocess.run(["ps", "-ewwo", "pid,args"], capture_output=True, text=True).stdout
    return [line for line in ps.splitlines() if marker in line and "ps -ewwo" not in line]


def test_a_failing_worker_stops_the_server_with_its_one_line():
    marker = f"# {uuid.uuid4()}"  # names this run's processes in `ps`
    argv = [sys.executable, "-c", ARBITER + marker, FAILING_WORKER + marker]
    began = time.monotonic()
    with pytest.raises(ServingModelError) as caught:
        supervise(argv, dict(os.environ), stop_timeout=5)
    assert time.monotonic() - began < 30
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("The adaptation service's worker could not start: ")
    assert "feature_store.yaml not found." in message and "Fix: set the repo path." in message
    assert not _processes_with(marker), "the server was left running"


def test_a_server_that_ends_on_its_own_gives_its_exit_code():
    assert supervise([sys.executable, "-c", "raise SystemExit(4)"], dict(os.environ)) == 4
    assert supervise([sys.executable, "-c", "pass"], dict(os.environ)) == 0


def test_an_unsupervised_worker_raises_as_before(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != STARTUP_FAILURE_ENV}
    done = subprocess.run([sys.executable, "-c", FAILING_WORKER], env=env, capture_output=True)
    assert done.returncode == 1 and b"not supervised" in done.stderr
    failure = tmp_path / "failure"
    env[STARTUP_FAILURE_ENV] = str(failure)
    done = subprocess.run([sys.executable, "-c", FAILING_WORKER], env=env, capture_output=True)
    assert done.returncode == WORKER_EXIT_CODE and not done.stderr
    assert json.loads(failure.read_text()) == {
        "problem": "The adaptation service's worker could not start: feature_store.yaml not found.",
        "fix": "set the repo path.",
    }


def test_the_failure_is_one_line_with_a_fix():
    named = startup_failure(FeatureStoreError("a\nb  c", fix="do\nthis"))
    assert named.problem == "The adaptation service's worker could not start: a b c"
    assert named.fix == "do this"
    other = startup_failure(OSError("disk\nfull"))
    assert other.problem.endswith("OSError: disk full") and "materialised" in other.fix


SUPERVISOR = """
import os, sys
from metarec.serving.startup import supervise
supervise([sys.executable, "-c", "import time; time.sleep(120)" + sys.argv[1]], dict(os.environ))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl(PR_SET_PDEATHSIG)")
def test_a_killed_supervisor_takes_the_server_with_it():
    marker = f"# {uuid.uuid4()}"
    supervisor = subprocess.Popen([sys.executable, "-c", SUPERVISOR, marker])
    try:
        deadline = time.monotonic() + 30
        while len(_processes_with(marker)) < 2:  # the supervisor and its server
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.1)
    finally:
        supervisor.kill()  # SIGKILL: no handler runs
        supervisor.wait()
    deadline = time.monotonic() + 10
    while _processes_with(marker):
        assert time.monotonic() < deadline, "the server outlived its supervisor"
        time.sleep(0.1)
