"""What a test leaves behind on its database: its writes emptied, its leftovers named.

:func:`clean_database` runs the tracking's clean routine
(:mod:`~pytest_integration_kit.isolation.tracking`) on the kit's engine; a transaction
left open that makes it wait for a lock is ended, the clean done again, and the test
told. :func:`leftovers` names what is still checked out of an engine or inside a
transaction (the strict leak check).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pytest_integration_kit.isolation.admin import LOCK_TIMEOUT_SECONDS, lock_timeout_setting
from pytest_integration_kit.isolation.errors import IsolationError

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from pytest_integration_kit.isolation.admin import CleanReport
    from pytest_integration_kit.isolation.databases import IsolatedDatabases

__all__ = ["clean_database", "leftovers"]


def clean_database(databases: IsolatedDatabases, name: str) -> CleanReport:
    """Empty the tables of ``name`` written since the last clean and restore their seed
    rows; after a lock timeout, end the transaction holding it, clean, and raise."""
    try:
        return _clean(databases, name)
    except Exception as exc:
        setting = lock_timeout_setting(exc)
        if setting is None:
            raise
    # A transaction left open holds rows the clean must delete: end it, clean again
    # (a second failure propagates), and say what happened. Raised outside the
    # except block: the report shows no chained traceback.
    admin = databases.admin
    with databases.admin_engine.connect() as conn:
        held = admin.open_transactions(conn, name)
        admin.end_transactions(conn, name)
    _clean(databases, name)
    raise IsolationError(
        f"cleaning {name!r} after the test waited {LOCK_TIMEOUT_SECONDS} s for a lock "
        f"({setting}): a connection was still inside a transaction on it, left open "
        "by this test or an earlier one"
        + (f" ({'; '.join(held)})" if held else "")
        + ". The kit ended it and cleaned, so later tests are not affected. Commit or "
        "roll back what the code under test opens and give connections back to their "
        "pool (integration_leak_check = true names such leftovers after every test)."
    )


def _clean(databases: IsolatedDatabases, name: str) -> CleanReport:
    with databases.engine(name).connect() as conn:
        row = conn.exec_driver_sql(databases.admin.clean_statement).first()
        conn.commit()
    return databases.admin.clean_report(row)


def leftovers(databases: IsolatedDatabases, name: str, engine: Engine | None) -> list[str]:
    """What is left checked out (of ``engine``) or inside a transaction on ``name``."""
    found: list[str] = []
    if engine is not None:
        checked_out = engine.pool.checkedout()  # type: ignore[attr-defined]
        if checked_out:
            found.append(f"{checked_out} connection(s) of the engine on {name!r} checked out")
    with databases.admin_engine.connect() as conn:
        found += [
            f"{name!r}: {description}"
            for description in databases.admin.open_transactions(conn, name)
        ]
    return found
