"""Registry database: engine creation and programmatic Alembic migrations.

SQLite (the embedded default) gets WAL journaling, foreign keys, a busy timeout and
``BEGIN IMMEDIATE`` write transactions, so that concurrent writers queue for the write lock
instead of failing half-way; read transactions stay deferred and never wait for a writer.
PostgreSQL runs at READ COMMITTED; mutations lock the model row first.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from metarec.errors import RegistryError

VERSION_TABLE = "registry_alembic_version"
# Execution option that marks read-only transactions (SQLite: deferred BEGIN).
READ_ONLY_OPTION = "metarec_registry_read_only"
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# Any constant: serialises concurrent migrations on one PostgreSQL database.
_PG_MIGRATION_LOCK = 0x4D455452


def create_registry_engine(url: str, *, busy_timeout_s: float = 30.0) -> Engine:
    """Create an engine for the registry database at ``url``.

    Args:
        url: SQLAlchemy URL (``sqlite:///path`` or ``postgresql+psycopg://…``).
        busy_timeout_s: SQLite: how long a writer waits for the write lock.

    Returns:
        The engine.

    Raises:
        RegistryError: The URL is malformed or its driver is not installed.
    """
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise RegistryError(
            f"Registry database URL {url!r} is not a valid SQLAlchemy URL.",
            fix="set registry.database_url (METAREC_REGISTRY__DATABASE_URL) to e.g. "
            "sqlite:///path/registry.db or postgresql+psycopg://user@host:5432/db.",
        ) from exc
    kwargs: dict[str, Any] = {}
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {"timeout": busy_timeout_s, "check_same_thread": False}
    else:
        kwargs["pool_pre_ping"] = True
    try:
        engine = create_engine(parsed, **kwargs)
    except (ArgumentError, ImportError) as exc:
        raise RegistryError(
            f"Cannot create a database engine for {parsed.render_as_string()} ({exc}).",
            fix="install the database driver (psycopg for PostgreSQL) or correct the URL.",
        ) from exc
    if engine.dialect.name == "sqlite":
        _configure_sqlite(engine)
    return engine


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the sqlite3 module, emit BEGIN (so it can be IMMEDIATE).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        # Writers take the write lock up front (no lock upgrade deadlocks); readers do not, so
        # in WAL mode they never wait for a writer.
        read_only = connection.get_execution_options().get(READ_ONLY_OPTION, False)
        connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def _alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def head_revision() -> str:
    """The newest migration revision shipped with this MetaRec version."""
    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    """The migration revision the database is at (None: not initialised)."""
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
        return context.get_current_revision()


def upgrade_database(engine: Engine) -> None:
    """Bring the registry schema to the newest revision (no-op when it is current).

    Concurrent callers are serialised (SQLite write lock, PostgreSQL advisory lock), so many
    processes may open a fresh registry at once.

    Args:
        engine: The registry engine.

    Raises:
        RegistryError: The database cannot be reached or migrated.
    """
    head = head_revision()
    try:
        if current_revision(engine) == head:
            return
        config = _alembic_config()
        with engine.begin() as connection:
            if engine.dialect.name == "postgresql":
                connection.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK}
                )
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
    except SQLAlchemyError as exc:
        raise RegistryError(
            f"Cannot open the registry database {engine.url.render_as_string()} "
            f"({type(exc).__name__}: {str(exc).splitlines()[0]}).",
            fix="check registry.database_url, that the server is running and that the user may "
            "create tables.",
        ) from exc
