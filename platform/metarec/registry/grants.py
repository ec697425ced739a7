"""Least-privilege PostgreSQL grants for the registry's workloads.

The owner role (the one ``metarec db upgrade`` connects as) owns the tables, so only it can
create, alter or drop them, or their triggers. Each other workload connects as its own login
role and gets exactly the privileges its code path uses:

* ``serving``: read the models and versions (and the schema revision). Nothing else.
* ``controller``: read everything it uses; update a version's ``stage`` column only; append
  ledger entries; update the state columns of a rollout (never its model, version or spec);
  append rollout events.
* ``writer`` (API, training and retrain jobs): what the controller may, plus register models
  and versions (insert; ``bento_tag`` updated after the BentoML export) and create rollouts;
  and run tuning trials in the Optuna tables that share the database (rows only).

Every role may also update ``registry_models.created_at``: PostgreSQL requires an ``UPDATE``
privilege on some column for ``SELECT … FOR UPDATE``, the lock that serialises stage moves.
Ledger rows stay append-only for everyone: the triggers refuse ``UPDATE``/``DELETE``/``TRUNCATE``
and no role other than the owner gets those privileges anyway.

:func:`apply_grants` is idempotent: in one transaction, every managed privilege of each named
role is revoked and granted again, so a role moved between workloads loses what it had. The
roles are created by the database administrator (``CREATE ROLE … LOGIN PASSWORD …``); MetaRec
never creates roles or passwords. On SQLite there are no roles: grants are a no-op.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import SQLAlchemyError

from metarec.errors import RegistryError
from metarec.registry.db import PG_MIGRATION_LOCK, VERSION_TABLE, redact, redacted_url

Workload = Literal["serving", "controller", "writer"]
# (privilege, column); column None: the whole table.
Privilege = tuple[str, str | None]

_ROLLOUT_STATE_COLUMNS = (
    "phase",
    "step_index",
    "canary_weight",
    "failed_checks",
    "production_mae",
    "window_started_at",
    "verdict",
    "message",
    "updated_at",
    "revision",
    "abort_requested",
)
_LOCK = ("UPDATE", "created_at")  # SELECT … FOR UPDATE needs UPDATE on a column
_READ: set[Privilege] = {("SELECT", None)}
_APPEND: set[Privilege] = {("SELECT", None), ("INSERT", None)}


def _columns(privilege: str, columns: tuple[str, ...]) -> set[Privilege]:
    return {(privilege, column) for column in columns}


_CONTROLLER: dict[str, set[Privilege]] = {
    VERSION_TABLE: _READ,
    "registry_models": _READ | {_LOCK},
    "registry_versions": _READ | {("UPDATE", "stage")},
    "registry_ledger": _APPEND,
    "rollout_runs": _READ | _columns("UPDATE", _ROLLOUT_STATE_COLUMNS),
    "rollout_events": _APPEND,
}
# The Optuna RDB storage of `metarec tune` shares the registry's database by default: its
# tables (Optuna 5) are created by `metarec db upgrade`, as the owner; the writer runs trials.
OPTUNA_TABLES = (
    "studies",
    "study_directions",
    "study_user_attributes",
    "study_system_attributes",
    "trials",
    "trial_user_attributes",
    "trial_system_attributes",
    "trial_params",
    "trial_values",
    "trial_intermediate_values",
    "trial_heartbeats",
)
OPTUNA_VERSION_TABLES = ("version_info", "alembic_version")
_TRIALS: set[Privilege] = {("SELECT", None), ("INSERT", None), ("UPDATE", None), ("DELETE", None)}
WORKLOAD_PRIVILEGES: dict[Workload, dict[str, set[Privilege]]] = {
    "serving": {VERSION_TABLE: _READ, "registry_models": _READ, "registry_versions": _READ},
    "controller": _CONTROLLER,
    "writer": {
        **_CONTROLLER,
        "registry_models": _APPEND | {_LOCK},
        "registry_versions": _APPEND | _columns("UPDATE", ("stage", "bento_tag")),
        "rollout_runs": _CONTROLLER["rollout_runs"] | {("INSERT", None)},
        **{table: _TRIALS for table in OPTUNA_TABLES},
        **{table: _READ for table in OPTUNA_VERSION_TABLES},
    },
}
# The tables whose privileges the grants manage (those that exist in the schema).
MANAGED_TABLES = tuple(WORKLOAD_PRIVILEGES["writer"])
# The sequences of a table's serial columns (inserting needs USAGE on them).
_SEQUENCES = text(
    "SELECT pg_get_serial_sequence(:table, attname) FROM pg_attribute "
    "WHERE attrelid = to_regclass(:table) AND attnum > 0 AND NOT attisdropped "
    "AND pg_get_serial_sequence(:table, attname) IS NOT NULL"
)


def role_privileges(roles: Mapping[Workload, str | None]) -> dict[str, dict[str, set[Privilege]]]:
    """Login role → table → privileges; a role named for several workloads gets their union."""
    merged: dict[str, dict[str, set[Privilege]]] = {}
    for workload, role in roles.items():
        if not role:
            continue
        tables = merged.setdefault(role, {table: set() for table in MANAGED_TABLES})
        for table, privileges in WORKLOAD_PRIVILEGES[workload].items():
            tables[table] |= privileges
    return merged


def render(privileges: set[Privilege]) -> list[str]:
    """SQL privilege clauses: ``SELECT``, ``UPDATE (stage, bento_tag)``; table-level first."""
    whole = sorted(p for p, column in privileges if column is None)
    by_column: dict[str, list[str]] = {}
    for privilege, column in sorted(privileges, key=lambda p: (p[0], p[1] or "")):
        if column is not None and privilege not in whole:
            by_column.setdefault(privilege, []).append(column)
    return whole + [f"{p} ({', '.join(columns)})" for p, columns in sorted(by_column.items())]


def apply_grants(engine: Engine, roles: Mapping[Workload, str | None]) -> list[str]:
    """Grant each named login role exactly its workloads' privileges (idempotent).

    Args:
        engine: The registry engine, connected as the owner of the tables.
        roles: Workload → login role (None or empty: that workload is left alone).

    Returns:
        The GRANT statements issued (empty on SQLite, which has no roles, or with no roles).

    Raises:
        RegistryError: A role does not exist, is the owner or a superuser, or a statement failed.
    """
    plan = role_privileges(roles)
    if engine.dialect.name != "postgresql" or not plan:
        return []
    issued: list[str] = []
    try:
        with engine.begin() as connection:
            # Serialised with migrations and with a concurrent `db upgrade`.
            connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": PG_MIGRATION_LOCK}
            )
            schema = connection.scalar(text("SELECT current_schema()"))
            for role in plan:
                _check_role(connection, role)
            for role, tables in plan.items():
                issued += _grant_role(connection, role, tables, schema=str(schema))
    except SQLAlchemyError as exc:
        detail = (str(getattr(exc, "orig", exc)).splitlines() or [""])[0]
        raise RegistryError(
            redact(
                f"Cannot grant the registry roles on {redacted_url(engine.url)}: {detail}",
                engine.url,
            ),
            fix="run `metarec db upgrade` as the owner of the registry tables (the user who ran "
            "the migrations).",
        ) from exc
    return issued


def _check_role(connection: Connection, role: str) -> None:
    found = connection.execute(
        text("SELECT rolsuper, rolname = current_user FROM pg_roles WHERE rolname = :role"),
        {"role": role},
    ).first()
    if found is None:
        raise RegistryError(
            f"Database role {role!r} (registry.database_roles) does not exist.",
            fix=f"have the DBA create it: CREATE ROLE {role} LOGIN PASSWORD '…' "
            "(docs/security.md), or correct the role name.",
        )
    if found[0] or found[1]:
        raise RegistryError(
            f"Database role {role!r} is {'a superuser' if found[0] else 'the owner'}: grants "
            "cannot limit what it may do.",
            fix="give each workload its own non-superuser login role (docs/security.md).",
        )


def _grant_role(
    connection: Connection, role: str, tables: dict[str, set[Privilege]], *, schema: str
) -> list[str]:
    """Revoke every managed privilege of ``role``, then grant ``tables``' privileges."""
    issued = [f'GRANT USAGE ON SCHEMA "{schema}" TO "{role}"']
    for table, privileges in tables.items():
        name = f'"{table}"'
        if connection.scalar(text("SELECT to_regclass(:table)"), {"table": name}) is None:
            continue  # e.g. the Optuna tables when the owner could not create them
        connection.execute(text(f'REVOKE ALL ON TABLE {name} FROM "{role}"'))
        for sequence in connection.scalars(_SEQUENCES, {"table": name}):
            connection.execute(text(f'REVOKE ALL ON SEQUENCE {sequence} FROM "{role}"'))
            if ("INSERT", None) in privileges:
                issued.append(f'GRANT USAGE ON SEQUENCE {sequence} TO "{role}"')
        if privileges:
            issued.append(f'GRANT {", ".join(render(privileges))} ON TABLE "{table}" TO "{role}"')
    for statement in issued:
        connection.execute(text(statement))
    return issued


def describe_grants(engine: Engine, roles: Mapping[Workload, str | None]) -> dict[str, list[str]]:
    """What each named role holds on the registry tables: ``table: SELECT, UPDATE (stage)``.

    Returns:
        Role → one line per table it holds a privilege on (empty on SQLite).
    """
    names = sorted({role for role in roles.values() if role})
    if engine.dialect.name != "postgresql" or not names:
        return {}
    held: dict[str, dict[str, set[Privilege]]] = {role: {} for role in names}
    query = text(
        "SELECT grantee, table_name, privilege_type, NULL AS column_name "
        "FROM information_schema.table_privileges WHERE table_schema = current_schema() "
        "UNION ALL SELECT grantee, table_name, privilege_type, column_name "
        "FROM information_schema.column_privileges WHERE table_schema = current_schema()"
    )
    with engine.connect() as connection:
        for grantee, table, privilege, column in connection.execute(query):
            if grantee in held and table in MANAGED_TABLES:
                held[grantee].setdefault(table, set()).add((privilege, column))
    return {
        role: [
            f"{table}: {', '.join(render(privileges))}"
            for table, privileges in sorted(tables.items())
        ]
        for role, tables in held.items()
    }
