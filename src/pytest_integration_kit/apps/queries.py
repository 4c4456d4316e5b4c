"""Count the SQL statements a block of code sends: ``with QueryCounter() as q: …``.

Listens to SQLAlchemy's ``before_cursor_execute`` on the ``Engine`` class, so every
engine counts — the test's, the application's own, and the sync engine under each
``AsyncEngine`` — from any thread (an ASGI application serves requests in its own loop
thread, a sync endpoint in a worker thread), while the block is open. Left out: the
savepoint statements a rolled-back test session issues for the code under test
(``SAVEPOINT``, ``RELEASE``/``ROLLBACK TO SAVEPOINT``) and what the kit's own background
threads send (the clone pool's threads).

Nothing here imports pytest.
"""

from __future__ import annotations

import re
import threading
from typing import Any, Final

__all__ = ["QueryBudgetExceeded", "QueryCounter", "at_most"]

#: Statements the kit's savepoint sessions add around what the code under test sends.
HARNESS_STATEMENTS: Final = re.compile(
    r"^\s*(SAVEPOINT|RELEASE\s+SAVEPOINT|ROLLBACK\s+TO\s+SAVEPOINT)\b", re.IGNORECASE
)
#: The kit's own background threads (the clone pool's), whose statements are not the test's.
KIT_THREADS: Final = ("integration-clones-", "integration-drops-")
#: How much of one statement a failure message shows.
SHOWN_CHARS: Final = 300


class QueryBudgetExceeded(AssertionError):
    """More statements than :func:`at_most` allowed; the message lists them."""


class QueryCounter:
    """A context manager recording the statements sent while it is open."""

    def __init__(self) -> None:
        self.statements: list[str] = []
        self._lock = threading.Lock()
        self._open = False

    @property
    def count(self) -> int:
        return len(self.statements)

    def _record(  # noqa: PLR0917 - the signature SQLAlchemy calls
        self,
        conn: Any,
        cursor: Any,
        statement: str,
        parameters: Any,
        context: Any,
        executemany: bool,
    ) -> None:
        if HARNESS_STATEMENTS.match(statement):
            return
        if threading.current_thread().name.startswith(KIT_THREADS):
            return
        with self._lock:
            self.statements.append(statement)

    def __enter__(self) -> QueryCounter:
        from sqlalchemy import event  # noqa: PLC0415 - optional dependency, imported when used
        from sqlalchemy.engine import Engine  # noqa: PLC0415 - optional dependency, imported when used

        event.listen(Engine, "before_cursor_execute", self._record)
        self._open = True
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if not self._open:
            return
        from sqlalchemy import event  # noqa: PLC0415 - optional dependency, imported when used
        from sqlalchemy.engine import Engine  # noqa: PLC0415 - optional dependency, imported when used

        event.remove(Engine, "before_cursor_execute", self._record)
        self._open = False

    def report(self) -> str:
        """The statements, numbered, each cut to a readable length."""
        lines = []
        for number, statement in enumerate(self.statements, 1):
            text = " ".join(statement.split())
            if len(text) > SHOWN_CHARS:
                text = text[:SHOWN_CHARS] + "…"
            lines.append(f"{number:>4}. {text}")
        return "\n".join(lines)


class at_most:
    """A context manager failing with :class:`QueryBudgetExceeded` when the block sends
    more than ``limit`` statements (after the block; the statements are listed)."""

    def __init__(self, limit: int) -> None:
        if limit < 0:
            raise ValueError("at_most(limit) needs limit >= 0")
        self.limit = limit
        self.counter = QueryCounter()

    def __enter__(self) -> QueryCounter:
        return self.counter.__enter__()

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.counter.close()
        counter = self.counter
        if exc_type is None and counter.count > self.limit:
            raise QueryBudgetExceeded(
                f"{counter.count} SQL statements, at most {self.limit} expected:\n"
                + counter.report()
            )
