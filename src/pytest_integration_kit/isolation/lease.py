"""The database one test uses under one strategy, and what happens to it afterwards.

``rollback`` — the worker database; sessions roll back, and the tables written through
anything else (the Engine fixture, the code's own engine, another process) are emptied
too; those that connections other than the kit's committed to are reported
(:attr:`DatabaseLease.foreign_tables`): rollback was not what undid them.
``truncate`` — the worker database; afterwards the tables written to (tracked by
triggers, whoever wrote) are emptied and their seed rows restored, in one round trip.
``clone`` — a database equal to the template, taken from the background pool; behind
the test it is reset to the template's state for a later test, or dropped when the
reset cannot vouch for it (:mod:`~pytest_integration_kit.isolation.clone_pool`).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Final

from pytest_integration_kit.isolation.errors import IsolationError, LeakError
from pytest_integration_kit.isolation.rollback_clean import (
    async_rollback_and_clean,
    rollback_and_clean,
    rollback_clean_session,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

    from sqlalchemy.engine import Connection, Engine
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
    from sqlalchemy.orm import Session

    from pytest_integration_kit.isolation.admin import CleanReport
    from pytest_integration_kit.isolation.clone_pool import Clone
    from pytest_integration_kit.isolation.databases import IsolatedDatabases

__all__ = ["STRATEGIES", "DatabaseLease"]

STRATEGIES: Final = ("rollback", "truncate", "clone")


class DatabaseLease:
    """One test's database; shared by the fixtures of that test, released by the last."""

    def __init__(
        self,
        databases: IsolatedDatabases,
        strategy: str,
        *,
        leak_check: bool = False,
        clone_pool_size: int = 2,
    ) -> None:
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy {strategy!r} is not one of {', '.join(STRATEGIES)}")
        self.databases = databases
        self.strategy = strategy
        self.leak_check = leak_check
        self._clone: Clone | None = None
        if strategy == "clone":
            self._clone = databases.clone_pool(clone_pool_size).take()
            self.database = self._clone.name
            self.engine: Engine = self._clone.engine
        else:
            self.database = databases.worker_database()
            self.engine = databases.engine(self.database)
        self.users = 0
        self.engine_used = False
        #: Set by :meth:`end` under ``rollback``: tables that connections other than the
        #: kit's committed to during the test (emptied, but not by the rollback).
        self.foreign_tables: tuple[str, ...] = ()
        #: What the last session's end cleaned, when it did (:meth:`_end_session`).
        self._cleaned: CleanReport | None = None

    def acquire(self) -> DatabaseLease:
        self.users += 1
        return self

    def release(self) -> bool:
        """One user fewer; the last one ends the lease (True when it did)."""
        self.users -= 1
        if self.users > 0:
            return False
        self.end()
        return True

    @contextmanager
    def session(self, **options: Any) -> Iterator[Session]:
        """A Session for the test: rolled back (rollback) or plain (truncate, clone)."""
        if self.strategy == "rollback":
            with rollback_clean_session(self.engine, self._end_session, **options) as session:
                yield session
            return
        from sqlalchemy.orm import Session  # noqa: PLC0415 - optional dependency, imported when used

        with Session(self.engine, **options) as session:
            yield session

    def _end_session(self, connection: Connection) -> bool:
        """Roll back and clean in one round trip when this session is the last user.

        Not while other fixtures of the test still use the database, nor under the
        leak check, which looks for leftovers before the clean.
        """
        if self.users != 1 or self.leak_check:
            return False
        self._cleaned = rollback_and_clean(self.databases.admin, connection)
        return self._cleaned is not None

    async def end_async_session(self, connection: AsyncConnection) -> None:
        """:meth:`_end_session` for an AsyncSession's connection (the session's ``end``)."""
        if self.users != 1 or self.leak_check:
            return
        self._cleaned = await async_rollback_and_clean(self.databases.admin, connection)

    def async_engine(self, driver: str | None = None) -> AsyncEngine:
        """The AsyncEngine on this lease's database (shared: the databases dispose of it)."""
        return self.databases.async_engine(self.database, driver)

    def end(self) -> None:
        """Clean up after the test; raises LeakError (after cleaning) under the leak check."""
        leaks = self.databases.leaks(self.database, self.engine) if self.leak_check else []
        if leaks:
            self._terminate_leaks()
        try:
            if self._clone is not None:
                self.databases.clone_pool().give_back(self._clone)
            else:
                # Under rollback too: one round trip finds (and empties) what was
                # committed around the session, unless the session's end did.
                report = self._cleaned
                if report is None:
                    report = self.databases.clean(self.database)
                if self.strategy == "rollback":
                    self.foreign_tables = report.foreign
                if report.changed:
                    self.databases.rebuild(self.database)
                    raise IsolationError(
                        f"the columns of {', '.join(report.changed)} changed during the test "
                        "(DDL that committed): neither rollback nor truncate can undo a schema "
                        "change. The worker database was rebuilt from the template, so later "
                        "tests are not affected; use @pytest.mark.isolation('clone') for tests "
                        "that change the schema."
                    )
        finally:
            if leaks:
                raise LeakError(
                    "the test left behind (strict leak check, integration_leak_check):\n  - "
                    + "\n  - ".join(leaks)
                )

    def _terminate_leaks(self) -> None:
        """Close what the test left open so cleaning does not wait on its locks."""
        self.engine.pool.dispose()
        with self.databases.admin_engine.connect() as conn:
            self.databases.admin.end_transactions(conn, self.database)
