"""Alembic environment for the MetaRec registry.

Migrations run programmatically (:func:`metarec.registry.db.upgrade_database`), on a connection
that the caller already opened inside a transaction; offline (SQL script) mode is not used.
"""

from __future__ import annotations

from alembic import context
from metarec.registry.db import VERSION_TABLE
from metarec.registry.schema import Base

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    version_table=VERSION_TABLE,
    transactional_ddl=True,
)
with context.begin_transaction():
    context.run_migrations()
