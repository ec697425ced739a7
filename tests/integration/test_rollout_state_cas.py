"""Compare-and-set saves of rollout state, on SQLite and on a real PostgreSQL server.

Writers that read the same revision race to save it: exactly one wins, the others are refused
(their events are not written either). A database created before the revision column existed
is migrated in place and its rollouts keep working. PostgreSQL: 127.0.0.1:5432, a unique schema
per test (skipped with the reason when the server does not answer).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from metarec.errors import RolloutStaleStateError
from metarec.registry.db import (
    MIGRATIONS,
    create_registry_engine,
    current_revision,
    head_revision,
    upgrade_database,
)
from metarec.rollout import Phase, RolloutSpec
from metarec.rollout.store import EventRecord, RolloutStore
from metarec.rollout.types import EventKind
from metarec.testing.registry import postgres_schema

pytestmark = pytest.mark.integration

WRITERS = 6
ROUNDS = 15


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'registry.db'}"
        return
    try:
        schema_url, drop = postgres_schema()
    except OSError as exc:
        print(f"SKIP reason: {exc}")
        pytest.skip(str(exc))
    try:
        yield schema_url
    finally:
        drop()


@pytest.fixture
def engine(url: str) -> Iterator[sa.Engine]:
    engine = create_registry_engine(url)
    yield engine
    engine.dispose()


def test_writers_of_one_revision_race_and_exactly_one_wins(engine: sa.Engine):
    upgrade_database(engine)
    store = RolloutStore(engine=engine)
    state = store.create(model="m", version=2, production_version=1, spec=RolloutSpec(), actor="t")
    for round_ in range(ROUNDS):
        read = store.get(state.id)
        barrier = threading.Barrier(WRITERS)
        outcomes: list[str] = []

        def write(writer: int, read=read, barrier=barrier, outcomes=outcomes) -> None:
            event = EventRecord(EventKind.RETRY, 50, 50, message=f"writer {writer}")
            barrier.wait()
            try:
                store.save(read.model_copy(update={"message": f"writer {writer}"}), event=event)
                outcomes.append(f"writer {writer}")
            except RolloutStaleStateError:
                outcomes.append("refused")

        threads = [threading.Thread(target=write, args=(i,)) for i in range(WRITERS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        [winner] = [outcome for outcome in outcomes if outcome != "refused"]
        assert outcomes.count("refused") == WRITERS - 1
        stored = store.get(state.id)
        assert (stored.message, stored.revision) == (winner, read.revision + 1), round_
        # Only the winner's event was written (a refused save writes nothing).
        assert [e.message for e in store.events(state.id)][-1] == winner
    assert len(store.events(state.id)) == ROUNDS


def test_an_abort_request_survives_a_concurrent_save(engine: sa.Engine):
    upgrade_database(engine)
    store = RolloutStore(engine=engine)
    state = store.create(model="m", version=2, production_version=1, spec=RolloutSpec(), actor="t")
    store.request_abort("m")  # an operator, between the controller's read and its save
    saved = store.save(state.model_copy(update={"phase": Phase.PROGRESSING}))
    assert saved.abort_requested and store.get(state.id).abort_requested


def test_a_database_from_before_the_revision_column_is_migrated_in_place(engine: sa.Engine):
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0002_rollouts")
    with engine.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO rollout_runs (id, model, version, production_version, phase, spec, "
                "step_index, canary_weight, failed_checks, abort_requested, message, actor, "
                "created_at, updated_at) VALUES ('old', 'm', 2, 1, 'Progressing', :spec, 0, 10, "
                "0, false, 'canary at 10 %', 't', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
            ),
            {"spec": RolloutSpec().model_dump_json()},
        )
    upgrade_database(engine)
    assert current_revision(engine) == head_revision()
    store = RolloutStore(engine=engine)
    old = store.get("old")
    assert (old.phase, old.canary_weight, old.revision) == (Phase.PROGRESSING, 10, 0)
    saved = store.save(old.model_copy(update={"message": "resumed"}))
    assert saved.revision == 1
    with pytest.raises(RolloutStaleStateError):
        store.save(old)
