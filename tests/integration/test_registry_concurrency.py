"""Concurrent promotions, crashes mid-promotion, and the database constraints, on SQLite and
on a real PostgreSQL server (127.0.0.1:5432; skipped with the reason when it does not answer).
"""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from metarec.registry import Action, Registry, VersionRef
from metarec.testing.registry import (
    postgres_schema,
    promotion_worker,
    register_fixture,
    registry_snapshot,
)

pytestmark = pytest.mark.integration

ROUNDS = 50


@pytest.fixture(params=["sqlite", "postgresql"])
def registry_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'registry.db'}"
        return
    try:
        url, drop = postgres_schema()
    except OSError as exc:
        print(f"SKIP reason: {exc}")
        pytest.skip(str(exc))
    try:
        yield url
    finally:
        drop()


@pytest.fixture
def registry(registry_url: str, tmp_path: Path) -> Iterator[Registry]:
    with Registry.connect(url=registry_url, artifact_root=str(tmp_path / "artifacts")) as opened:
        yield opened


def start_workers(registry_url: str, artifact_root: str) -> tuple[list, list]:
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2)
    pipes, workers = [], []
    for _ in range(2):
        parent, child = context.Pipe()
        worker = context.Process(
            target=promotion_worker,
            args=(child,),
            kwargs={"url": registry_url, "artifact_root": artifact_root, "barrier": barrier},
            daemon=True,
        )
        worker.start()
        pipes.append(parent)
        workers.append(worker)
    # The barrier must outlive the children's start (they unpickle it after start()).
    workers.append(barrier)
    return pipes, workers


def stop_workers(pipes: list, workers: list) -> None:
    for pipe in pipes:
        pipe.send(None)
    for worker in workers[:-1]:
        worker.join(timeout=30)
        assert worker.exitcode == 0


@pytest.mark.slow
def test_two_processes_promote_at_the_same_moment(registry, registry_url, tmp_path):
    """50 rounds: both processes base their promotion on the same production version."""
    for index in range(2 * ROUNDS):
        register_fixture(registry, tmp_path / f"a{index}", seed=index)
    pipes, workers = start_workers(registry_url, str(tmp_path / "artifacts"))
    winners = []
    try:
        for round_ in range(ROUNDS):
            version_a, version_b = 2 * round_ + 1, 2 * round_ + 2
            observed = registry.production_version("metarec")
            ledger_before = len(registry.history("metarec"))
            pipes[0].send((version_a, observed))
            pipes[1].send((version_b, observed))
            results = [pipe.recv() for pipe in pipes]
            kinds = sorted(kind for kind, _ in results)
            assert kinds == ["conflict", "ok"], (round_, results)
            winner = next(value for kind, value in results if kind == "ok")
            loser_message = next(value for kind, value in results if kind == "conflict")
            assert "production changed while this request ran" in loser_message
            assert f"expected {'none' if observed is None else f'v{observed}'}" in loser_message
            production = registry.list_versions("metarec")
            assert [v.version for v in production if v.stage == "production"] == [winner]
            # Exactly one promotion's ledger entries were written: promote (+ archive).
            added = registry.history("metarec")[ledger_before:]
            assert [e.action for e in added] == (
                [Action.PROMOTE] if observed is None else [Action.ARCHIVE, Action.PROMOTE]
            )
            winners.append(winner)
    finally:
        stop_workers(pipes, workers)
    assert len(winners) == ROUNDS
    with registry.engine.connect() as connection:
        count = connection.execute(
            sa.text("SELECT count(*) FROM registry_versions WHERE stage = 'production'")
        ).scalar_one()
    assert count == 1


@pytest.mark.slow
def test_simultaneous_promotions_without_stated_expectation_keep_one_production(
    registry, registry_url, tmp_path
):
    """Both observe production themselves: one or both succeed in turn, never two at once."""
    rounds = 10
    for index in range(2 * rounds):
        register_fixture(registry, tmp_path / f"a{index}", seed=index)
    pipes, workers = start_workers(registry_url, str(tmp_path / "artifacts"))
    try:
        for round_ in range(rounds):
            pipes[0].send((2 * round_ + 1, "observe"))
            pipes[1].send((2 * round_ + 2, "observe"))
            results = [pipe.recv() for pipe in pipes]
            assert all(kind in {"ok", "conflict"} for kind, _ in results), results
            assert any(kind == "ok" for kind, _ in results), results
            stages = [v.stage for v in registry.list_versions("metarec")]
            assert stages.count("production") == 1
    finally:
        stop_workers(pipes, workers)


CRASH = textwrap.dedent(
    """
    import os, sys
    from metarec.registry import Registry, VersionRef

    url, root, step = sys.argv[1:4]

    def crash(name):
        if name == step:
            os._exit(17)  # the process dies inside the open transaction

    registry = Registry.connect(url=url, artifact_root=root, on_step=crash)
    registry.promote(VersionRef(model="metarec", version=2), actor="crash", reason="crash")
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("step", ["previous-archived", "ledger-written"])
def test_process_dying_mid_promotion_leaves_registry_unchanged(
    registry, registry_url, tmp_path, step
):
    register_fixture(registry, tmp_path / "a1", seed=1)
    register_fixture(registry, tmp_path / "a2", seed=2)
    registry.promote(VersionRef(model="metarec", version=1), actor="a", reason="go")
    before = registry_snapshot(registry)
    result = subprocess.run(
        [sys.executable, "-c", CRASH, registry_url, str(tmp_path / "artifacts"), step],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ},
    )
    assert result.returncode == 17, result.stderr
    assert registry_snapshot(registry) == before
    # And the registry still works: the same promotion now succeeds.
    registry.promote(VersionRef(model="metarec", version=2), actor="a", reason="go")
    assert registry.production_version("metarec") == 2


def test_database_constraints(registry, tmp_path):
    register_fixture(registry, tmp_path / "a1", seed=1)
    register_fixture(registry, tmp_path / "a2", seed=2)
    with pytest.raises(sa.exc.IntegrityError), registry.engine.begin() as connection:
        connection.execute(sa.text("UPDATE registry_versions SET stage = 'production'"))
    for statement in ("UPDATE registry_ledger SET actor = 'x'", "DELETE FROM registry_ledger"):
        with (
            pytest.raises(sa.exc.DatabaseError, match="append-only"),
            registry.engine.begin() as connection,
        ):
            connection.execute(sa.text(statement))
    assert len(registry.history("metarec")) == 2


def test_round_trip(registry, tmp_path):
    register_fixture(registry, tmp_path / "a1", seed=1)
    registry.promote(VersionRef(model="metarec", version=1), actor="a", reason="go")
    register_fixture(registry, tmp_path / "a2", seed=2)
    registry.promote(VersionRef(model="metarec", version=2), actor="a", reason="go")
    assert registry.get_version(VersionRef(model="metarec", version=1)).stage == "archived"
    assert registry.rollback("metarec", actor="a", reason="back").version == 1
    assert [e.action for e in registry.history("metarec")][-2:] == [
        Action.ARCHIVE,
        Action.ROLLBACK,
    ]
    assert registry.history("metarec")[-1].created_at.tzinfo is not None


def test_simultaneous_registrations_get_distinct_versions(registry_url, tmp_path):
    """Four registries (own engines) register four artifacts at once into a fresh model."""
    import threading

    from metarec.gate.policy import load_policy
    from metarec.gate.run import gate_artifact
    from metarec.testing.registry import write_fixture_artifact

    root = str(tmp_path / "artifacts")
    registries = [Registry.connect(url=registry_url, artifact_root=root) for _ in range(4)]
    folders = [write_fixture_artifact(tmp_path / f"c{i}", seed=i) for i in range(4)]
    decisions = [gate_artifact(folder, policy=load_policy(), model="fresh") for folder in folders]
    barrier = threading.Barrier(4)
    results: list = [None] * 4

    def register(index: int) -> None:
        barrier.wait(timeout=30)
        try:
            results[index] = registries[index].register(
                folders[index], model="fresh", gate_decision=decisions[index], actor=f"t{index}"
            )
        except Exception as exc:  # collected and asserted below
            results[index] = exc

    threads = [threading.Thread(target=register, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    try:
        assert all(not isinstance(result, Exception) for result in results), results
        assert sorted(result.version for result in results) == [1, 2, 3, 4]
        history = registries[0].history("fresh")
        assert sorted(entry.version for entry in history) == [1, 2, 3, 4]
    finally:
        for opened in registries:
            opened.close()
