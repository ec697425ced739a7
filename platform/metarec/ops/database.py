"""Use cases of the registry database: migrate it once, as its owner, and grant the roles.

``metarec db upgrade`` (and the Helm chart's ``db-migrate`` hook Job) runs :func:`upgrade_registry`
with the owner's database URL; every other process opens the registry with
``registry.migrate_on_open`` off and its own, least-privileged role
(:mod:`metarec.registry.grants`). :func:`registry_database_status` reports the revision and what
each configured role holds.
"""

from __future__ import annotations

from pydantic import BaseModel

from metarec.config import Settings
from metarec.registry.db import (
    create_registry_engine,
    head_revision,
    read_revision,
    redacted_url,
    upgrade_database,
)
from metarec.registry.grants import Workload, apply_grants, describe_grants
from metarec.registry.service import database_url

SQLITE_NOTE = "SQLite has no database roles: grants are a no-op."


class DatabaseUpgrade(BaseModel):
    """What ``metarec db upgrade`` did."""

    url: str  # password hidden
    dialect: str
    from_revision: str | None
    to_revision: str
    grants: list[str]  # the GRANT statements issued
    note: str = ""


class DatabaseStatus(BaseModel):
    """The registry database's revision and the privileges of the configured roles."""

    url: str  # password hidden
    dialect: str
    current_revision: str | None
    head_revision: str
    at_head: bool
    roles: dict[str, str]  # workload → login role (configured ones only)
    grants: dict[str, list[str]]  # login role → "table: privileges" lines
    note: str = ""


def _roles(settings: Settings) -> dict[Workload, str | None]:
    roles = settings.registry.database_roles
    return {"serving": roles.serving, "controller": roles.controller, "writer": roles.writer}


def upgrade_registry(settings: Settings) -> DatabaseUpgrade:
    """Migrate the registry schema to head, then grant each configured role its privileges.

    Also creates the tables of the Optuna storage that tuning keeps in this database.

    Run it as the owner of the registry tables (``registry.database_url`` the owner's URL).
    Idempotent: a current schema is left alone and the grants are re-applied.

    Args:
        settings: MetaRec settings (``registry.database_url``, ``registry.database_roles``).

    Returns:
        The revisions before and after, and the GRANT statements issued.

    Raises:
        RegistryError: The database cannot be migrated, or a role is missing, the owner or a
            superuser.
    """
    engine = create_registry_engine(database_url(settings))
    try:
        before = read_revision(engine)
        upgrade_database(engine)
        _create_tuning_tables(database_url(settings))
        grants = apply_grants(engine, _roles(settings))
        return DatabaseUpgrade(
            url=redacted_url(engine.url),
            dialect=engine.dialect.name,
            from_revision=before,
            to_revision=head_revision(),
            grants=grants,
            note=SQLITE_NOTE if engine.dialect.name == "sqlite" else "",
        )
    finally:
        engine.dispose()


def _create_tuning_tables(url: str) -> None:
    """Create the Optuna storage's tables as the owner (`metarec tune` uses this database).

    The writer role may then run trials without creating tables.
    """
    from metarec.tuning.study import open_storage

    open_storage(url).engine.dispose()


def registry_database_status(settings: Settings) -> DatabaseStatus:
    """The schema revision versus head, and what each configured role holds (never migrates).

    Raises:
        RegistryError: The database cannot be reached.
    """
    engine = create_registry_engine(database_url(settings))
    try:
        current = read_revision(engine)
        roles = {workload: role for workload, role in _roles(settings).items() if role}
        return DatabaseStatus(
            url=redacted_url(engine.url),
            dialect=engine.dialect.name,
            current_revision=current,
            head_revision=head_revision(),
            at_head=current == head_revision(),
            roles=roles,
            grants=describe_grants(engine, roles),
            note=SQLITE_NOTE if engine.dialect.name == "sqlite" else "",
        )
    finally:
        engine.dispose()
