"""Reference profiles on the object store: every pod (a fresh retrain pod) shares them.

Against the tests' S3-compatible server (moto, through s3fs with its endpoint URL).
"""

from __future__ import annotations

import pytest
from metarec.config import load_settings
from metarec.errors import ReferenceProfileNotFoundError
from metarec.validation.gate import profile_store
from metarec.validation.profile import ProfileStore

from tests.unit.validation.conftest import make_profile, make_training_set

pytestmark = pytest.mark.integration


def test_profiles_on_s3_are_versioned_and_never_overwritten(s3):
    store = ProfileStore(s3.url("profiles"))
    with pytest.raises(ReferenceProfileNotFoundError, match="metarec features profile"):
        store.current("meta_training")

    first = make_profile(make_training_set(seed=1), version=store.next_version("meta_training"))
    written = store.add(first)
    assert written == s3.url("profiles", "meta_training", "v0001.json")
    second = make_profile(make_training_set(seed=2), version=store.next_version("meta_training"))
    store.add(second)

    # Another process (a fresh pod) sees both, the newest as the reference.
    other = ProfileStore(s3.url("profiles"))
    assert other.versions("meta_training") == [1, 2]
    assert other.current("meta_training") == second
    assert other.get("meta_training", 1) == first

    before = s3.filesystem().cat_file(written)
    with pytest.raises(FileExistsError):
        other.add(make_profile(make_training_set(seed=3), version=1))
    assert s3.filesystem().cat_file(written) == before


def test_the_gate_keeps_profiles_beside_the_snapshots_when_an_offline_root_is_set(s3, tmp_path):
    on_cluster = load_settings(home=tmp_path / "a", feast={"offline_root": s3.url("offline")})
    profile = make_profile(make_training_set(seed=1))
    profile_store(on_cluster).add(profile)
    assert s3.filesystem().exists(s3.url("offline", "validation", "profiles", "meta_training"))

    another_pod = load_settings(home=tmp_path / "b", feast={"offline_root": s3.url("offline")})
    assert profile_store(another_pod).current("meta_training") == profile

    laptop = load_settings(home=tmp_path / "c")
    assert profile_store(laptop).root == tmp_path / "c" / "validation" / "profiles"
    assert profile_store(laptop).versions("meta_training") == []
