"""Checksums on every load, and no pickle ever executed."""

import json
import pickle
import uuid
from pathlib import Path

import pytest
import torch
from metarec.errors import ArtifactChecksumError, ArtifactError
from metarec.gate.policy import load_policy
from metarec.gate.run import gate_artifact
from metarec.registry import Registry, VersionRef
from metarec.registry.artifacts import inspect_artifact

V1 = VersionRef(model="metarec", version=1)


class _Exploit:
    """Unpickling this creates ``marker``: proof that a pickle was executed."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "pickle was executed"))


def stored_file(registry: Registry, name: str) -> Path:
    info = registry.get_version(V1)
    return Path(info.artifact_uri.removeprefix("file://")) / name


def test_weights_load_verified(registry, register):
    register()
    weights = registry.load_weights(V1)
    assert set(weights) == {"decision.0.weight", "decision.0.bias"}
    assert weights["decision.0.weight"].shape == torch.Size([4, 3])
    registry.verify(V1)


@pytest.mark.parametrize("name", ["model.safetensors", "model_card.json"])
def test_one_changed_byte_is_refused_naming_the_version(registry, register, tmp_path, name):
    register()
    path = stored_file(registry, name)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ArtifactChecksumError, match=r"model version metarec:v1 .*checksum"):
        registry.verify(V1)
    with pytest.raises(ArtifactChecksumError, match="metarec:v1"):
        registry.fetch(V1, tmp_path / "copy")
    assert not (tmp_path / "copy").exists()
    if name == "model.safetensors":
        with pytest.raises(ArtifactChecksumError, match="metarec:v1"):
            registry.load_weights(V1)


def test_pickle_in_place_of_stored_weights_is_never_executed(registry, register, tmp_path):
    register()
    marker = tmp_path / f"pwned-{uuid.uuid4().hex}"
    stored_file(registry, "model.safetensors").write_bytes(pickle.dumps(_Exploit(marker)))
    with pytest.raises(ArtifactChecksumError, match="metarec:v1"):
        registry.load_weights(V1)
    with pytest.raises(ArtifactChecksumError):
        registry.fetch(V1, tmp_path / "copy")
    assert not marker.exists()


def test_pickle_as_weights_is_refused_at_registration(registry, artifact, tmp_path):
    folder = artifact()
    marker = tmp_path / f"pwned-{uuid.uuid4().hex}"
    (folder / "model.safetensors").write_bytes(pickle.dumps(_Exploit(marker)))
    with pytest.raises(ArtifactError, match="is not a safetensors file"):
        gate_artifact(folder, policy=load_policy(), model="metarec", registry=registry)
    assert not marker.exists()


@pytest.mark.parametrize("extra", ["optimizer.pt", "state.pkl", "weights.bin"])
def test_pickle_style_extra_files_are_refused(artifact, extra):
    folder = artifact()
    (folder / extra).write_bytes(b"\x80\x04N.")
    with pytest.raises(ArtifactError, match="pickle-style format"):
        inspect_artifact(folder)


def test_incomplete_and_malformed_artifacts_are_refused(artifact, tmp_path):
    with pytest.raises(ArtifactError, match="does not exist"):
        inspect_artifact(tmp_path / "missing")
    folder = artifact()
    (folder / "model_card.json").write_text("{not json")
    with pytest.raises(ArtifactError, match="is not valid JSON"):
        inspect_artifact(folder)
    (folder / "model_card.json").unlink()
    with pytest.raises(ArtifactError, match=r"lacks model_card\.json"):
        inspect_artifact(folder)


def test_digest_depends_on_every_file(artifact):
    folder = artifact(seed=1)
    first = inspect_artifact(folder).digest
    card = json.loads((folder / "model_card.json").read_text())
    card["snapshot_id"] = "changed"
    (folder / "model_card.json").write_text(json.dumps(card))
    assert inspect_artifact(folder).digest != first


def test_fsspec_object_store_root(tmp_path, artifact):
    """Any fsspec URL works as artifact root (memory:// stands in for s3:// here)."""
    root = f"memory://metarec-{uuid.uuid4().hex}"
    with Registry.connect(url=f"sqlite:///{tmp_path / 'r.db'}", artifact_root=root) as registry:
        folder = artifact()
        decision = gate_artifact(folder, policy=load_policy(), model="metarec", registry=registry)
        info = registry.register(folder, model="metarec", gate_decision=decision, actor="t")
        assert info.artifact_uri.startswith("memory://")
        assert set(registry.load_weights(V1)) == {"decision.0.weight", "decision.0.bias"}
        import fsspec

        fs = fsspec.filesystem("memory")
        target = info.artifact_uri.removeprefix("memory://") + "/model_card.json"
        fs.pipe_file(target, fs.cat_file(target) + b" ")
        with pytest.raises(ArtifactChecksumError, match="metarec:v1"):
            registry.verify(V1)
