"""A failure between the steps of a mutation leaves the registry and the ledger unchanged."""

from collections.abc import Callable
from pathlib import Path

import pytest
from metarec.gate.policy import load_policy
from metarec.gate.run import gate_artifact
from metarec.registry import Registry, VersionRef
from metarec.testing.registry import registry_snapshot as snapshot


class InjectedError(RuntimeError):
    pass


def failing_at(step: str) -> Callable[[str], None]:
    def hook(name: str) -> None:
        if name == step:
            raise InjectedError(step)

    return hook


def reopen(registry: Registry, on_step: Callable[[str], None]) -> Registry:
    return Registry(engine=registry.engine, artifacts=registry.artifacts, on_step=on_step)


@pytest.mark.parametrize("step", ["previous-archived", "version-promoted", "ledger-written"])
def test_failed_promotion_changes_nothing(registry, register, step):
    register()
    register()
    registry.promote(VersionRef(model="metarec", version=1), actor="a", reason="go")
    before = snapshot(registry)
    with pytest.raises(InjectedError):
        reopen(registry, failing_at(step)).promote(
            VersionRef(model="metarec", version=2), actor="a", reason="go"
        )
    assert snapshot(registry) == before


@pytest.mark.parametrize("step", ["previous-archived", "version-promoted", "ledger-written"])
def test_failed_rollback_changes_nothing(registry, register, step):
    register()
    register()
    registry.promote(VersionRef(model="metarec", version=1), actor="a", reason="go")
    registry.promote(VersionRef(model="metarec", version=2), actor="a", reason="go")
    before = snapshot(registry)
    with pytest.raises(InjectedError):
        reopen(registry, failing_at(step)).rollback("metarec", actor="a", reason="back")
    assert snapshot(registry) == before


@pytest.mark.parametrize("step", ["version-archived", "ledger-written"])
def test_failed_archive_changes_nothing(registry, register, step):
    register()
    before = snapshot(registry)
    with pytest.raises(InjectedError):
        reopen(registry, failing_at(step)).archive(
            VersionRef(model="metarec", version=1), actor="a", reason="retire"
        )
    assert snapshot(registry) == before


@pytest.mark.parametrize("step", ["version-inserted", "ledger-written"])
def test_failed_registration_changes_nothing(registry, register, artifact, step):
    register()
    before = snapshot(registry)
    folder: Path = artifact()
    decision = gate_artifact(folder, policy=load_policy(), model="metarec", registry=registry)
    with pytest.raises(InjectedError):
        reopen(registry, failing_at(step)).register(
            folder, model="metarec", gate_decision=decision, actor="t"
        )
    assert snapshot(registry) == before
    # The same artifact registers cleanly afterwards (nothing half-written blocks it).
    info = registry.register(folder, model="metarec", gate_decision=decision, actor="t")
    assert info.version == 2
