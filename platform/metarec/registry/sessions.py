"""Database sessions of the registry: read and write transactions, and database error mapping.

Every mutation is one write transaction (SQLite ``BEGIN IMMEDIATE``, see :mod:`.db`); reads run
in read-only transactions that never wait for a writer. Database errors become registry errors
that name the problem and the fix: a unique-constraint or lock conflict is a
:class:`~metarec.errors.RegistryConflictError`, anything else a
:class:`~metarec.errors.RegistryError` naming the database.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from metarec.errors import RegistryConflictError, RegistryError
from metarec.registry.db import READ_ONLY_OPTION

StepHook = Callable[[str], None]
# Words of database messages that mean "another transaction held the lock": retry later.
_BUSY_WORDS = ("locked", "deadlock", "serializ", "could not")


class Sessions:
    """Read and write transactions over one registry engine, with the step hook of mutations."""

    def __init__(self, engine: Engine, *, on_step: StepHook | None = None) -> None:
        """Create the session factories.

        Args:
            engine: The registry database engine (schema current).
            on_step: Called with a step name between the steps of every mutation, inside its
                transaction (tests inject failures here).
        """
        self.engine = engine
        self._on_step = on_step
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._read_sessions = sessionmaker(
            engine.execution_options(**{READ_ONLY_OPTION: True}), expire_on_commit=False
        )

    def step(self, name: str) -> None:
        """Report that a mutation reached step ``name`` (calls the hook, if any)."""
        if self._on_step is not None:
            self._on_step(name)

    @contextmanager
    def read(self) -> Iterator[Session]:
        """One read-only transaction; database errors become :class:`RegistryError`."""
        try:
            with self._read_sessions() as session, session.begin():
                yield session
        except DBAPIError as exc:
            raise self.database_error(exc) from exc

    @contextmanager
    def write(self, what: str) -> Iterator[Session]:
        """One write transaction; database conflicts become :class:`RegistryConflictError`.

        Args:
            what: What the transaction does (``"promoting metarec:v3"``), named in errors.
        """
        try:
            with self._sessions() as session, session.begin():
                yield session
        except IntegrityError as exc:
            raise RegistryConflictError(
                f"Conflict while {what}: another change reached the registry first "
                f"({_first_line(exc)}).",
                fix="check `metarec models list` / `history`, then retry if still wanted.",
            ) from exc
        except OperationalError as exc:
            if any(word in str(exc.orig).lower() for word in _BUSY_WORDS):
                raise RegistryConflictError(
                    f"Conflict while {what}: the registry was busy with another change "
                    f"({_first_line(exc)}).",
                    fix="retry in a moment.",
                ) from exc
            raise self.database_error(exc) from exc
        except DBAPIError as exc:
            raise self.database_error(exc) from exc

    @contextmanager
    def write_if_new(self) -> Iterator[Session]:
        """A write transaction whose unique-constraint conflict is not an error (skipped)."""
        try:
            with self._sessions() as session, session.begin():
                yield session
        except IntegrityError:
            pass  # the row was created concurrently by another process: fine.

    def database_error(self, exc: DBAPIError) -> RegistryError:
        """The registry error for an unexpected database error."""
        return RegistryError(
            f"Registry database error ({type(exc.orig).__name__}: "
            f"{_first_line(exc) if str(exc.orig) else 'no detail'}).",
            fix=f"check that {self.engine.url.render_as_string()} is reachable and writable.",
        )


def _first_line(exc: DBAPIError) -> str:
    return str(exc.orig).splitlines()[0]
