"""The endpoint every backend returns: where a server is and how to log in."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from urllib.parse import quote

__all__ = ["LOOPBACK", "MASK", "Endpoint"]

#: What stands for a password in anything shown to people.
MASK = "***"
#: Host names of this machine's loopback.
LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})


@dataclass(frozen=True)
class Endpoint:
    """A running server, whichever backend started it.

    ``url`` is ready for SQLAlchemy (with the service's default sync driver) or for
    redis-py. ``repr`` and ``str`` never show the password.
    """

    service: str
    host: str
    port: int
    user: str
    password: str = field(repr=False)
    database: str
    backend: str
    #: URL scheme including the driver, e.g. ``postgresql+psycopg``.
    scheme: str
    version: str = ""
    #: The server's other ports by name (a spec's ``extra_ports``: RabbitMQ's
    #: ``management``), as reachable from here.
    ports: dict[str, int] = field(default_factory=dict, compare=False)

    @property
    def url(self) -> str:
        return self._url(self.password)

    @property
    def safe_url(self) -> str:
        """The URL with the password replaced by ``***``, for reports and logs."""
        return self._url(MASK if self.password else "")

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def _url(self, password: str) -> str:
        auth = quote(self.user, safe="")
        if password:
            auth += ":" + (password if password == MASK else quote(password, safe=""))
        userinfo = f"{auth}@" if auth else ""
        return f"{self.scheme}://{userinfo}{self.address}/{quote(self.database, safe='')}"

    def url_for(self, driver: str | None = None) -> str:
        """The URL with another driver: ``url_for("asyncpg")`` → ``postgresql+asyncpg://…``.

        The scheme's base (``"postgresql"``, ``"mysql"``) gives the plain libpq/CLI form
        that ``psql``, ``mysql``, ``psycopg.connect`` and ``asyncpg.connect`` take; None
        gives :attr:`url`. User, password and database are percent-encoded, so any
        character in a password survives SQLAlchemy, libpq and redis-py alike.

        .. versionadded:: 0.1
        """
        if driver is None:
            return self.url
        base = self.scheme.split("+", 1)[0]
        if not driver.isidentifier():
            raise ValueError(f"{driver!r} is not a driver name")
        if driver == base:
            return dataclasses.replace(self, scheme=base).url
        if "+" not in self.scheme:
            raise ValueError(f"{self.service} URLs take no driver (got {driver!r})")
        return dataclasses.replace(self, scheme=f"{base}+{driver}").url

    def with_database(self, database: str) -> Endpoint:
        """The same server, another database (or Redis db index)."""
        return dataclasses.replace(self, database=database)

    def with_address(self, host: str, port: int) -> Endpoint:
        """The same server reached through another address (a proxy, say)."""
        return dataclasses.replace(self, host=host, port=port)

    def __str__(self) -> str:
        return self.safe_url
