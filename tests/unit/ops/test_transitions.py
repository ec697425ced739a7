"""`promote`, `rollback`, `archive`: one registry transaction each, with production before/after."""

from pathlib import Path

import pytest
from metarec.config import load_settings
from metarec.errors import InvalidTransitionError, RegistryConflictError, VersionNotFoundError
from metarec.ops import archive, promote, rollback
from metarec.registry import Action, Registry, Stage, VersionRef
from metarec.testing.registry import register_fixture


@pytest.fixture
def settings(tmp_path: Path):
    return load_settings(home=tmp_path / "home", registry={"export_bentoml": False})


@pytest.fixture
def two_versions(settings, tmp_path):
    with Registry.open(settings) as registry:
        register_fixture(registry, tmp_path / "a1", seed=1)
        register_fixture(registry, tmp_path / "a2", seed=2)
    return VersionRef(model="metarec", version=1), VersionRef(model="metarec", version=2)


def test_promote_reports_the_version_it_replaced_and_writes_the_ledger(settings, two_versions):
    v1, v2 = two_versions
    first = promote(settings, ref=v1, actor="alice", reason="first")
    assert (first.production_before, first.production_after) == (None, 1)
    assert first.version.stage is Stage.PRODUCTION
    second = promote(settings, ref=v2, actor="bob", reason="better", evidence={"canary": "ok"})
    assert (second.production_before, second.production_after) == (1, 2)
    with Registry.open(settings) as registry:
        assert registry.get_version(v1).stage is Stage.ARCHIVED
        last = registry.history("metarec")[-1]
    assert (last.action, last.version, last.actor, last.reason) == (
        Action.PROMOTE,
        2,
        "bob",
        "better",
    )
    assert last.evidence["canary"] == "ok"


def test_promote_refuses_when_production_moved_since_the_decision(settings, two_versions):
    v1, v2 = two_versions
    promote(settings, ref=v1, actor="a", reason="r")
    with pytest.raises(RegistryConflictError):
        promote(settings, ref=v2, actor="a", reason="r", expected_production=None)
    with Registry.open(settings) as registry:
        assert registry.production_version("metarec") == 1


def test_rollback_brings_the_previous_version_back(settings, two_versions):
    v1, v2 = two_versions
    with Registry.open(settings) as registry:  # the caller's open registry is used, left open
        promote(settings, ref=v1, actor="a", reason="r", registry=registry)
        promote(settings, ref=v2, actor="a", reason="r", registry=registry)
        back = rollback(settings, model="metarec", actor="carol", reason="p99", registry=registry)
        assert registry.ping()
    assert (back.production_before, back.production_after) == (2, 1)
    assert back.version.tag == "metarec:v1"
    with Registry.open(settings) as registry:
        assert registry.history("metarec")[-1].action is Action.ROLLBACK


def test_rollback_without_an_earlier_production_version_names_the_problem(settings, two_versions):
    promote(settings, ref=two_versions[0], actor="a", reason="r")
    with pytest.raises(VersionNotFoundError):
        rollback(settings, model="metarec", actor="a", reason="r")


def test_archive_of_production_leaves_none(settings, two_versions):
    v1, _ = two_versions
    promote(settings, ref=v1, actor="a", reason="r")
    done = archive(settings, ref=v1, actor="a", reason="retired")
    assert (done.production_before, done.production_after) == (1, None)
    assert done.version.stage is Stage.ARCHIVED
    with pytest.raises(InvalidTransitionError, match="already archived"):
        archive(settings, ref=v1, actor="a", reason="again")
