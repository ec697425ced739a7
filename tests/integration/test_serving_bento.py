"""``bentoml build`` builds the adaptation service's Bento offline from its bentofile.yaml.

BentoML 1.4 looks for ``uv`` whenever it writes a Bento's Python requirements (it runs it only
to lock packages, which ``lock_packages: false`` turns off); without ``uv`` it tries to
``pip install uv`` from an index. The test skips, naming the reason, where ``uv`` is missing,
and forbids every index (``PIP_NO_INDEX``, ``UV_OFFLINE``) so a build that needs the network
fails here.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
BENTOFILE = REPO / "platform" / "metarec" / "serving" / "bentofile.yaml"
BENTO_NAME = "metarec-adaptation"


def _uv_available() -> bool:
    if shutil.which("uv"):
        return True
    try:
        importlib.metadata.version("uv")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def _bentoml(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bentoml", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_bento_builds_offline_and_is_listed(tmp_path: Path):
    if not _uv_available():
        reason = (
            "bentoml build needs `uv` (BentoML 1.4 resolves it for every build and would "
            "otherwise pip-install it from an index); install it: pip install uv"
        )
        print(reason)
        pytest.skip(reason)
    env = dict(os.environ)
    env.update(
        {
            "BENTOML_HOME": str(tmp_path / "bentoml"),  # outside the build context
            "BENTOML_DO_NOT_TRACK": "true",
            "PIP_NO_INDEX": "1",
            "UV_OFFLINE": "1",
            "METAREC_HOME": str(tmp_path / "home"),  # importing the service reads settings
        }
    )
    built = _bentoml(["build", "platform", "--bentofile", str(BENTOFILE)], env)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    assert f'Successfully built Bento(tag="{BENTO_NAME}:' in built.stdout + built.stderr

    listed = _bentoml(["list", "-o", "json"], env)
    assert listed.returncode == 0, listed.stderr[-3000:]
    bentos = json.loads(listed.stdout)
    tags = [b["tag"] for b in bentos]
    assert any(t.startswith(f"{BENTO_NAME}:") for t in tags), tags

    (bento,) = [p for p in (tmp_path / "bentoml" / "bentos" / BENTO_NAME).iterdir() if p.is_dir()]
    assert (bento / "src" / "metarec" / "serving" / "service.py").is_file()
    requirements = (bento / "env" / "python" / "requirements.txt").read_text()
    assert "torch==2.13.0" in requirements
    assert not (bento / "env" / "python" / "requirements.lock.txt").exists()  # not locked
