"""Object storage for real: the registry's artifacts and the training sets on S3.

Everything goes through a real S3-compatible HTTP server (moto's server mode, started by
``tests/s3_server.py`` on 127.0.0.1) and ``s3fs``, configured only by the environment a cluster
pod gets (``AWS_ENDPOINT_URL_S3``, keys, region; ``METAREC_REGISTRY__ARTIFACT_ROOT``). Nothing
in ``s3fs`` or ``boto`` is patched.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from metarec.config import load_settings
from metarec.errors import ArtifactChecksumError
from metarec.registry import Registry, VersionRef
from metarec.registry.artifacts import CARD_FILE, WEIGHTS_FILE, ArtifactStore
from metarec.testing.registry import register_fixture
from metarec.testing.serving import SMALL_CONFIG

pytestmark = pytest.mark.integration


def _registry_settings(home: Path, s3, monkeypatch: pytest.MonkeyPatch):
    """Settings as a pod gets them: the artifact root from METAREC_REGISTRY__ARTIFACT_ROOT."""
    monkeypatch.setenv("METAREC_REGISTRY__ARTIFACT_ROOT", s3.url("artifacts"))
    settings = load_settings(home=home, registry={"export_bentoml": False})
    assert settings.registry.artifact_root == s3.url("artifacts")
    return settings


def test_s3fs_reaches_the_server_from_the_environment_alone(s3, monkeypatch):
    """The chart's AWS_ENDPOINT_URL, or the S3-specific AWS_ENDPOINT_URL_S3, is all it takes."""
    s3.filesystem().pipe_file(s3.url("probe.txt"), b"ok")
    assert s3.filesystem().cat_file(s3.url("probe.txt")) == b"ok"
    endpoint = s3.server.endpoint_url
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", endpoint)
    assert s3.filesystem().cat_file(s3.url("probe.txt")) == b"ok"
    assert s3.filesystem().s3.meta.endpoint_url == endpoint


def test_registered_artifact_lives_on_s3_and_is_fetched_back_verified(
    s3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    settings = _registry_settings(tmp_path / "home", s3, monkeypatch)
    with Registry.open(settings) as registry:
        info = register_fixture(registry, tmp_path / "candidate", seed=3)
        ref = VersionRef(model="metarec", version=info.version)
        assert info.artifact_uri.startswith(s3.url("artifacts", "registry", "metarec") + "/")
        # The objects are in the bucket, read back by an independent client.
        stored = s3.filesystem().ls(info.artifact_uri, detail=False)
        assert {name.rsplit("/", 1)[-1] for name in stored} == set(info.files)
        assert registry.verify(ref).digest == info.digest
        fetched = registry.fetch(ref, tmp_path / "fetched")
        for name in info.files:
            assert (fetched / name).read_bytes() == (tmp_path / "candidate" / name).read_bytes()
        assert registry.read_card(ref).weights_sha256 == info.files[WEIGHTS_FILE]


def test_corrupted_object_on_s3_is_refused(s3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    settings = _registry_settings(tmp_path / "home", s3, monkeypatch)
    with Registry.open(settings) as registry:
        info = register_fixture(registry, tmp_path / "candidate", seed=4)
        ref = VersionRef(model="metarec", version=info.version)
        weights = f"{info.artifact_uri}/{WEIGHTS_FILE}"
        fs = s3.filesystem()
        data = bytearray(fs.cat_file(weights))
        data[-1] ^= 0xFF  # one flipped bit in the tensor bytes: the header still parses
        fs.pipe_file(weights, bytes(data))
        with pytest.raises(ArtifactChecksumError) as raised:
            registry.fetch(ref, tmp_path / "fetched")
        assert raised.value.path.endswith(WEIGHTS_FILE)
        assert not (tmp_path / "fetched").exists(), "nothing is written from a corrupted artifact"
        with pytest.raises(ArtifactChecksumError):
            registry.load_weights(ref)
        # The card is intact and still reads.
        assert registry.read_card(ref).weights_sha256 == info.files[WEIGHTS_FILE]


def test_a_missing_object_on_s3_is_an_artifact_error(s3, tmp_path: Path, monkeypatch):
    from metarec.errors import ArtifactError

    settings = _registry_settings(tmp_path / "home", s3, monkeypatch)
    with Registry.open(settings) as registry:
        info = register_fixture(registry, tmp_path / "candidate", seed=5)
        s3.filesystem().rm_file(f"{info.artifact_uri}/{CARD_FILE}")
        store = ArtifactStore(root=s3.url("artifacts"))
        with pytest.raises(ArtifactError, match="missing"):
            store.read_verified(
                info.artifact_uri, CARD_FILE, sha256=info.files[CARD_FILE], version=info.tag
            )


# --------------------------------------------------------------------------- training sets
TINY = {**SMALL_CONFIG, "max_steps": 4, "support_sizes": ["5", "all"]}


def _upload_training_set(local: Path, s3, name: str = "synthetic") -> str:
    """Copy a training set with its manifest and validation record to S3; its URL."""
    from metarec.features.training_set import manifest_path
    from metarec.validation.record import record_path

    url = s3.url("training_sets", f"{name}.parquet")
    fs = s3.filesystem()
    for source, target in (
        (local, url),
        (manifest_path(local), manifest_path(url)),
        (record_path(local), record_path(url)),
    ):
        fs.put_file(str(source), target)
    return url


@pytest.fixture
def validated(synthetic_home, tmp_path: Path) -> Path:
    from metarec.testing.serving import mark_validated

    source = synthetic_home.paths.training_sets / "synthetic.parquet"
    return mark_validated(source, tmp_path / "ts" / "synthetic.parquet", result_id="result-s3")


def test_sibling_files_of_a_url_stay_urls():
    from metarec.features.training_set import manifest_path
    from metarec.validation.record import record_path

    url = "s3://bucket/prefix/x.v1.parquet"
    assert manifest_path(url) == "s3://bucket/prefix/x.v1.manifest.json"
    assert record_path(url) == "s3://bucket/prefix/x.v1.validation.json"
    assert manifest_path(Path("/d/x.parquet")) == Path("/d/x.manifest.json")


def test_training_set_reads_back_from_s3_with_manifest_and_record(s3, validated: Path):
    from metarec.features.training_set import load_training_set, read_manifest
    from metarec.validation.record import read_validation_record, require_passed

    url = _upload_training_set(validated, s3)
    frame, manifest = load_training_set(url)
    local_frame, local_manifest = load_training_set(validated)
    assert manifest == local_manifest
    assert frame.equals(local_frame)
    assert require_passed(url, fingerprint=manifest.fingerprint).result_id == "result-s3"
    assert read_validation_record(url) == read_validation_record(validated)
    assert read_manifest(url).fingerprint == manifest.fingerprint


def test_a_training_set_on_s3_without_its_record_or_manifest_is_refused(s3, validated: Path):
    from metarec.errors import DataSourceNotFoundError, FeatureStoreError
    from metarec.features.training_set import load_training_set, manifest_path
    from metarec.validation.record import (
        TrainingSetNotValidatedError,
        record_path,
        require_passed,
    )

    url = _upload_training_set(validated, s3)
    fs = s3.filesystem()
    fs.rm_file(record_path(url))
    with pytest.raises(TrainingSetNotValidatedError, match="has not been validated"):
        require_passed(url, fingerprint=load_training_set(url)[1].fingerprint)
    fs.rm_file(manifest_path(url))
    with pytest.raises(FeatureStoreError, match="no manifest"):
        load_training_set(url)
    with pytest.raises(DataSourceNotFoundError):
        load_training_set(s3.url("training_sets", "absent.parquet"))


def test_validation_record_is_written_beside_a_training_set_on_s3(s3, validated: Path):
    from metarec.validation.record import (
        read_validation_record,
        record_path,
        write_validation_record,
    )

    url = s3.url("ts", "written.parquet")
    record = read_validation_record(validated)
    assert write_validation_record(url, record) == record_path(url)
    assert s3.filesystem().exists(record_path(url))
    assert read_validation_record(url) == record


@pytest.mark.slow
def test_cli_trains_on_a_training_set_on_s3(s3, validated: Path, tmp_path: Path, monkeypatch):
    """Blocker 2: `metarec train --training-set s3://…` reads the set from the object store
    (not the local path ``s3:/…``); the artifact is written locally, and `metarec evaluate`
    reads the same URI."""
    import json

    import torch
    import yaml
    from metarec.cli.main import run
    from metarec.features.training_set import read_manifest

    torch.set_num_threads(1)
    monkeypatch.setenv("METAREC_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)  # a mangled `s3:/…` local path would resolve (and fail) here
    url = _upload_training_set(validated, s3)
    config_file = tmp_path / "train.yaml"
    config_file.write_text(yaml.safe_dump(TINY))
    out = tmp_path / "artifact"
    argv = ["train", "--config", str(config_file), "--device", "cpu"]
    code = run([*argv, "--training-set", url, "--out", str(out)])
    assert code == 0
    card = json.loads((out / "model_card.json").read_text())
    assert card["dataset_fingerprint"] == read_manifest(validated).fingerprint
    assert card["validation_result_id"] == "result-s3"
    code = run(["evaluate", str(out), "--training-set", url, "--scenario", "new_user"])
    assert code == 0
    evaluation = json.loads((out / "evaluation.json").read_text())
    assert set(evaluation["new_user"]) == set(TINY["support_sizes"])
    assert not (tmp_path / "s3:").exists()
