"""A version registered from an artifact at an ``s3://`` URI records that URI as its source.

Registration reads local folders, so an artifact on the object store (trained into a staging
folder, then uploaded with :func:`~metarec.ops.locations.publish_artifact`) is fetched into a
temporary folder first. The ledger's ``register`` entry must name the artifact's real location,
not that temporary copy, which is gone when the call returns. The server is the real
S3-compatible one of ``tests/s3_server.py``; nothing in ``s3fs`` is patched.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from metarec.config import load_settings
from metarec.errors import RegistryConflictError
from metarec.ops import (
    gate_candidate,
    local_artifact,
    publish_artifact,
    register_candidate,
    register_gated,
)
from metarec.registry import Action, Registry
from metarec.testing.registry import write_fixture_artifact

pytestmark = pytest.mark.integration


@pytest.fixture
def settings(tmp_path: Path):
    return load_settings(home=tmp_path / "home", registry={"export_bentoml": False})


def _uploaded(s3, tmp_path: Path, name: str, *, seed: int) -> str:
    """An artifact trained into a local staging folder, uploaded to S3; the folder removed."""
    staging = write_fixture_artifact(tmp_path / "staging" / name, seed=seed)
    url = publish_artifact(staging, s3.url("runs", name, "artifact"))
    for path in sorted(staging.iterdir()):
        path.unlink()
    staging.rmdir()
    return url


def _register_entry(settings, version: int):
    with Registry.open(settings) as registry:
        entries = registry.history("metarec")
    (entry,) = [e for e in entries if e.action is Action.REGISTER and e.version == version]
    return entry


def test_gate_and_register_records_the_s3_uri_as_the_source(settings, s3, tmp_path: Path):
    url = _uploaded(s3, tmp_path, "run-1", seed=1)
    outcome = register_candidate(
        settings, artifact=url, model="metarec", policy=None, training_set=None, actor="ci"
    )
    assert outcome.registered is not None
    entry = _register_entry(settings, outcome.registered.version)
    assert entry.evidence["source"] == url
    assert entry.evidence["digest"] == outcome.decision.artifact_digest


def test_register_after_the_gate_step_records_the_s3_uri(settings, s3, tmp_path: Path):
    url = _uploaded(s3, tmp_path, "run-2", seed=2)
    decision = gate_candidate(settings, artifact=url, model="metarec")
    registered = register_gated(
        settings, artifact=url, model="metarec", decision=decision, actor="pipeline"
    )
    assert not registered.reused
    assert _register_entry(settings, registered.version.version).evidence["source"] == url


def test_a_duplicate_from_s3_is_refused_naming_the_uri(settings, s3, tmp_path: Path):
    url = _uploaded(s3, tmp_path, "run-3", seed=3)
    decision = gate_candidate(settings, artifact=url, model="metarec")
    register_gated(settings, artifact=url, model="metarec", decision=decision, actor="a")
    with (
        Registry.open(settings) as registry,
        local_artifact(url) as copy,
        pytest.raises(RegistryConflictError) as raised,
    ):
        registry.register(copy, model="metarec", gate_decision=decision, actor="b", source=url)
    assert str(raised.value).startswith(f"{url} is already registered as metarec:v1")


def test_a_local_folder_is_still_its_own_source(settings, tmp_path: Path):
    folder = write_fixture_artifact(tmp_path / "local", seed=4)
    outcome = register_candidate(
        settings, artifact=folder, model="metarec", policy=None, training_set=None, actor="me"
    )
    assert outcome.registered is not None
    entry = _register_entry(settings, outcome.registered.version)
    assert entry.evidence["source"] == str(folder)
