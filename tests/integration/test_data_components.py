"""The data components as a pipeline calls them: typed, JSON-able, idempotent."""

import json

import pytest
from metarec.components.build_training_set import build_training_set
from metarec.components.ingest_data import ingest_data
from metarec.components.materialize_features import materialize_features

pytestmark = pytest.mark.integration


@pytest.mark.slow
def test_ingest_materialize_and_training_set_are_idempotent(tmp_path):
    home = str(tmp_path / "home")
    first = ingest_data(source="synthetic", seed=5, home=home)
    again = ingest_data(source="synthetic", seed=5, home=home)
    assert not first.reused and again.reused and again.snapshot_id == first.snapshot_id
    other = ingest_data(source="synthetic", seed=6, home=home)
    assert not other.reused and other.snapshot_id != first.snapshot_id

    applied = materialize_features(home=home)
    assert applied.snapshot_id == other.snapshot_id
    assert {"user_profile", "meta_training", "online_adaptation"} <= set(applied.objects)
    assert materialize_features(home=home).objects == applied.objects

    built = build_training_set(home=home)
    rebuilt = build_training_set(home=home, out=str(tmp_path / "again.parquet"))
    assert built.rows == other.interactions
    assert rebuilt.fingerprint == built.fingerprint
    for output in (first, applied, built):
        json.loads(output.model_dump_json())  # every output is JSON-able


def test_ingest_with_path_reuses_a_snapshot_of_the_same_archive(tmp_path):
    import zipfile

    archive = tmp_path / "ml-100k.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("ml-100k/u.data", "1\t1\t5\t874965758\n")
        zf.writestr("ml-100k/u.user", "1|24|M|technician|85711\n")
        zf.writestr(
            "ml-100k/u.item", "1|Toy Story (1995)|01-Jan-1995||u|" + "|".join(["0"] * 18) + "|1\n"
        )
    home = str(tmp_path / "home")
    first = ingest_data(source="ml-100k", path=str(archive), home=home)
    second = ingest_data(source="ml-100k", path=str(archive), home=home)
    assert second.reused and second.snapshot_id == first.snapshot_id
    assert first.input_checksum.startswith("sha256:")
