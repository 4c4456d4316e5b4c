"""AsyncEngines for drivers whose connections belong to the loop that opened them.

An aiomysql or asyncmy connection (and an asyncpg one, with SQLAlchemy before 2.0.16:
else :mod:`~pytest_integration_kit.isolation.kitloop` keeps them) cannot serve another
event loop, and pytest-asyncio gives each test a loop of its own: such a test opens a
connection and closes it. The Engine is shared (its dialect's first-connect queries run
once), the connections are not (``NullPool``). Two costs of an asyncpg connection are
the client's and are cut here (the first for the kit's kept connections too), with the
same session as the result:

- TLS negotiation: without ``ssl``/``sslmode`` asyncpg asks the server for TLS first
  (``prefer``), a round trip a server with ``ssl = off`` always declines. Asked once
  per server: when it says ``ssl = off`` and the kit's own libpq connection (which
  offered TLS too) is plain — not a proxy in front that takes TLS — connections go
  plain straight away.
- Closing: asyncpg's ``close()`` sends Terminate and then waits for the server's
  backend to exit and drop the socket, within the test's time. libpq does not wait;
  neither does the kit: an idle connection (no transaction open on the server) is
  closed at once, and the server ends that session as it would at Terminate.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine
    from sqlalchemy.engine.url import URL
    from sqlalchemy.ext.asyncio import AsyncEngine

    from pytest_integration_kit.isolation.admin import DatabaseAdmin

__all__ = ["close_without_waiting", "loop_bound_engine", "plain_url"]

#: Whether a server (by host and port) runs with ``ssl = off``.
_SSL_OFF: dict[tuple[str | None, int | None], bool] = {}
_SSL_OFF_LOCK = threading.Lock()
#: What makes asyncpg choose TLS on its own: a URL's query, or libpq's variables.
_TLS_QUERY = ("ssl", "sslmode", "direct_tls")
_TLS_ENVIRONMENT = ("PGSSLMODE", "PGSSLNEGOTIATION")


def loop_bound_engine(admin: DatabaseAdmin, url: URL, admin_engine: Engine) -> AsyncEngine:
    """An unpooled AsyncEngine on ``url`` (a loop-bound driver): one connection per use,
    opened without a TLS offer the server declines and closed without waiting."""
    from sqlalchemy import event  # noqa: PLC0415 - optional dependency, imported when used
    from sqlalchemy.pool import NullPool  # noqa: PLC0415 - optional dependency, imported when used

    if url.get_driver_name() != "asyncpg":
        return admin.kit_async_engine(url, poolclass=NullPool)
    engine = admin.kit_async_engine(plain_url(url, admin_engine), poolclass=NullPool)
    event.listen(engine.sync_engine, "close", close_without_waiting)
    return engine


def plain_url(url: URL, admin_engine: Engine) -> URL:
    """``url`` with ``ssl=disable`` when asyncpg would only offer TLS to a server that
    declines it (nothing asks for TLS, the server says ``ssl = off`` and the kit's
    libpq connection to it is plain); else ``url``."""
    if any(key in url.query for key in _TLS_QUERY) or any(
        name in os.environ for name in _TLS_ENVIRONMENT
    ):
        return url
    server = (url.host, url.port)
    with _SSL_OFF_LOCK:
        known = _SSL_OFF.get(server)
    if known is None:
        with admin_engine.connect() as conn:
            raw = conn.connection.driver_connection
            # psycopg's PGconn, psycopg2's ConnectionInfo; neither: TLS is left as is.
            libpq = getattr(raw, "pgconn", None) or getattr(raw, "info", None)
            plain = getattr(libpq, "ssl_in_use", True) is False
            known = plain and conn.exec_driver_sql("SHOW ssl").scalar() == "off"
        with _SSL_OFF_LOCK:
            _SSL_OFF[server] = known
    return url.update_query_dict({"ssl": "disable"}) if known else url


def close_without_waiting(dbapi_connection: Any, _record: Any) -> None:
    """Pool ``close`` hook: an idle asyncpg connection is closed at once (see the
    module's docstring); one inside a transaction keeps asyncpg's graceful close."""
    raw = dbapi_connection.driver_connection
    if not raw.is_closed() and not raw.is_in_transaction():
        raw.terminate()
