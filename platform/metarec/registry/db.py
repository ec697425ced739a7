"""Registry database: engine creation and programmatic Alembic migrations.

SQLite (the embedded default) gets WAL journaling, foreign keys, a busy timeout and
``BEGIN IMMEDIATE`` write transactions, so that concurrent writers queue for the write lock
instead of failing half-way; read transactions stay deferred and never wait for a writer.
PostgreSQL runs at READ COMMITTED; mutations lock the model row first.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from metarec.errors import RegistryError

VERSION_TABLE = "registry_alembic_version"
# Execution option that marks read-only transactions (SQLite: deferred BEGIN).
READ_ONLY_OPTION = "metarec_registry_read_only"
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# Any constant: serialises concurrent migrations on one PostgreSQL database.
PG_MIGRATION_LOCK = 0x4D455452
HIDDEN = "***"
# A password in a URL SQLAlchemy cannot parse: ``scheme://user:<password>@host`` (up to the
# last ``@``), else any ``user:<password>@`` of the text, and ``password=<value>`` in a query.
_USERINFO_PASSWORD = re.compile(r"(://[^:@/?#]*:)(.*)(@)")
_ANY_USERINFO_PASSWORD = re.compile(r"([^\s:/@]+:)(\S*)(@)")
_QUERY_PASSWORD = re.compile(r"((?:^|[?&;\s])password=)([^&;\s]*)", re.IGNORECASE)


def redacted_url(url: str | URL) -> str:
    """``url`` fit for an error message or a log: any password replaced by ``***``.

    Works on URLs SQLAlchemy cannot parse too (a malformed URL is named in its error).
    """
    try:
        parsed = url if isinstance(url, URL) else make_url(url)
        rendered = parsed.render_as_string(hide_password=True)
    except (ArgumentError, ValueError, TypeError):
        rendered = str(url)
    # Also after SQLAlchemy: a password holding an unescaped "@" is parsed into the host.
    userinfo = _USERINFO_PASSWORD if "://" in rendered else _ANY_USERINFO_PASSWORD
    rendered = userinfo.sub(rf"\g<1>{HIDDEN}\g<3>", rendered)
    return _QUERY_PASSWORD.sub(rf"\g<1>{HIDDEN}", rendered)


def redact(message: str, url: str | URL) -> str:
    """``message`` with the password of ``url`` (parsed or not) never shown."""
    try:
        parsed = url if isinstance(url, URL) else make_url(url)
        secrets = [parsed.password, parsed.query.get("password")]
    except (ArgumentError, ValueError, TypeError):
        text = str(url)
        userinfo = _USERINFO_PASSWORD if "://" in text else _ANY_USERINFO_PASSWORD
        secrets = [m.group(2) for m in (userinfo.search(text), _QUERY_PASSWORD.search(text)) if m]
    for secret in secrets:
        if secret and isinstance(secret, str):
            message = message.replace(secret, HIDDEN)
    return message


def create_registry_engine(url: str, *, busy_timeout_s: float = 30.0) -> Engine:
    """Create an engine for the registry database at ``url``.

    Args:
        url: SQLAlchemy URL (``sqlite:///path`` or ``postgresql+psycopg://…``).
        busy_timeout_s: SQLite: how long a writer waits for the write lock.

    Returns:
        The engine.

    Raises:
        RegistryError: The URL is malformed or its driver is not installed (the URL is named
            with its password hidden).
    """
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as exc:
        raise RegistryError(
            f"Registry database URL {redacted_url(url)!r} is not a valid SQLAlchemy URL.",
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
            redact(f"Cannot create a database engine for {redacted_url(parsed)} ({exc}).", url),
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
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": PG_MIGRATION_LOCK}
                )
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
    except SQLAlchemyError as exc:
        detail = (str(exc).splitlines() or [""])[0]
        raise RegistryError(
            redact(
                f"Cannot open the registry database {redacted_url(engine.url)} "
                f"({type(exc).__name__}: {detail}).",
                engine.url,
            ),
            fix="check registry.database_url, that the server is running and that the user may "
            "create tables.",
        ) from exc


def read_revision(engine: Engine) -> str | None:
    """:func:`current_revision`, with a database error as a :class:`RegistryError`.

    Raises:
        RegistryError: The database cannot be reached, or this role may not read the revision.
    """
    try:
        return current_revision(engine)
    except SQLAlchemyError as exc:
        detail = (str(exc).splitlines() or [""])[0]
        raise RegistryError(
            redact(
                f"Cannot read the schema revision of the registry database "
                f"{redacted_url(engine.url)} ({type(exc).__name__}: {detail}).",
                engine.url,
            ),
            fix="check registry.database_url, that the server is running and that this role "
            f"may read {VERSION_TABLE} (`metarec db upgrade` grants it).",
        ) from exc


def require_current_schema(engine: Engine) -> None:
    """Refuse a registry whose schema is not at this MetaRec's head revision (never migrates).

    Processes opened with ``registry.migrate_on_open`` off call this instead of
    :func:`upgrade_database`: their database role may not create tables, and the migrations
    run once, as the owner (``metarec db upgrade``, the Helm hook Job).

    Raises:
        RegistryError: The schema is older or newer than head, or cannot be read.
    """
    head = head_revision()
    current = read_revision(engine)
    if current == head:
        return
    script = ScriptDirectory.from_config(_alembic_config())
    known = current is not None and any(r.revision == current for r in script.walk_revisions())
    state = (
        "not initialised"
        if current is None
        else f"at revision {current}" + ("" if known else ", newer than this MetaRec knows")
    )
    raise RegistryError(
        f"The registry database {redacted_url(engine.url)} is {state}; this MetaRec needs "
        f"revision {head}, and registry.migrate_on_open is off, so it does not migrate.",
        fix="run `metarec db upgrade` with the owner's database URL (on Kubernetes the chart's "
        "db-migrate hook Job does so on `helm install`/`upgrade`)"
        + ("" if current is None or known else "; or run the MetaRec version that migrated it")
        + ".",
    )
