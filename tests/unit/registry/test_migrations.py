"""The Alembic migrations create exactly the ORM's schema."""

from pathlib import Path

import metarec.rollout.schema  # noqa: F401  (rollout tables share the registry database)
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from metarec.registry.db import (
    VERSION_TABLE,
    create_registry_engine,
    current_revision,
    head_revision,
    upgrade_database,
)
from metarec.registry.schema import Base


def test_migrations_match_the_models(tmp_path: Path):
    engine = create_registry_engine(f"sqlite:///{tmp_path / 'r.db'}")
    assert current_revision(engine) is None
    upgrade_database(engine)
    assert current_revision(engine) == head_revision()
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
        assert compare_metadata(context, Base.metadata) == []
    upgrade_database(engine)  # idempotent
    engine.dispose()


def test_migrations_ship_with_the_package():
    import metarec.registry

    root = Path(metarec.registry.__file__).parent / "migrations"
    assert (root / "env.py").is_file()
    assert list((root / "versions").glob("0001_*.py"))
