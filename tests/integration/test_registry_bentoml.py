"""Registered versions are BentoML models: `bentoml models list` shows them."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from metarec.registry import Registry, VersionRef
from metarec.registry.artifacts import verify_directory
from metarec.registry.bento import bento_model_path
from metarec.testing.registry import register_fixture

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BENTOML = Path(os.environ.get("VIRTUAL_ENV", Path(__file__).parents[2] / ".venv")) / "bin/bentoml"


def test_registered_versions_are_bentoml_models(tmp_path: Path):
    bentoml_home = tmp_path / "bentoml"
    with Registry.connect(
        url=f"sqlite:///{tmp_path / 'r.db'}",
        artifact_root=str(tmp_path / "artifacts"),
        bentoml_home=bentoml_home,
    ) as registry:
        first = register_fixture(registry, tmp_path / "a1", seed=1)
        second = register_fixture(registry, tmp_path / "a2", seed=2)
        assert (first.bento_tag, second.bento_tag) == ("metarec:v1", "metarec:v2")
        folder = bento_model_path(bentoml_home=bentoml_home, tag="metarec:v2")
        verify_directory(folder, files=second.files, version="metarec:v2")
        registry.verify(VersionRef(model="metarec", version=2))

    if not BENTOML.is_file():
        pytest.skip(f"bentoml CLI not found at {BENTOML}")
    env = {**os.environ, "BENTOML_HOME": str(bentoml_home), "BENTOML_DO_NOT_TRACK": "true"}
    listed = subprocess.run(
        [str(BENTOML), "models", "list"], capture_output=True, text=True, env=env, timeout=120
    )
    assert listed.returncode == 0, listed.stderr
    assert "metarec:v1" in listed.stdout and "metarec:v2" in listed.stdout


def test_failed_registration_removes_its_bentoml_model(tmp_path: Path):
    bentoml_home = tmp_path / "bentoml"

    def fail(step: str) -> None:
        if step == "bento-exported":
            raise RuntimeError("injected")

    with Registry.connect(
        url=f"sqlite:///{tmp_path / 'r.db'}",
        artifact_root=str(tmp_path / "artifacts"),
        bentoml_home=bentoml_home,
        on_step=fail,
    ) as registry:
        with pytest.raises(RuntimeError, match="injected"):
            register_fixture(registry, tmp_path / "a1", seed=1)
        assert registry.list_models()[0].versions == 0
    import bentoml.exceptions

    with pytest.raises(bentoml.exceptions.NotFound):
        bento_model_path(bentoml_home=bentoml_home, tag="metarec:v1")


def test_a_stale_export_under_the_same_tag_is_replaced(tmp_path: Path):
    # Two registries (e.g. a reset database) share one BentoML home: both have a v1, with
    # different artifacts. The second registration must not keep the first one's files.
    bentoml_home = tmp_path / "bentoml"
    for name, seed in (("old", 1), ("new", 2)):
        with Registry.connect(
            url=f"sqlite:///{tmp_path / f'{name}.db'}",
            artifact_root=str(tmp_path / f"artifacts-{name}"),
            bentoml_home=bentoml_home,
        ) as registry:
            version = register_fixture(registry, tmp_path / f"a-{name}", seed=seed)
    assert version.bento_tag == "metarec:v1"
    folder = bento_model_path(bentoml_home=bentoml_home, tag="metarec:v1")
    verify_directory(folder, files=version.files, version="metarec:v1")  # the new files
