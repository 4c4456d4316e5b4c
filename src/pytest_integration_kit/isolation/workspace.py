"""Everything one process isolated, on every server: closed together at the end."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from pytest_integration_kit.isolation.databases import IsolatedDatabases
from pytest_integration_kit.isolation.naming import owner_token
from pytest_integration_kit.isolation.ownership import (
    DEFAULT_LEASE_SECONDS,
    LeaseRenewer,
    Renewable,
)
from pytest_integration_kit.isolation.redis import RedisKeyspace
from pytest_integration_kit.isolation.schema import SchemaSource

if TYPE_CHECKING:
    from collections.abc import Callable

    from pytest_integration_kit.services.endpoint import Endpoint

__all__ = ["IsolationWorkspace"]


class IsolationWorkspace:
    """The :class:`IsolatedDatabases` and :class:`RedisKeyspace` of one process, by server.

    Usable from a script as a context manager::

        with IsolationWorkspace(SchemaSource(schema="app.models:Base")) as workspace:
            engine = workspace.databases(endpoint).engine()

    While it is open, a daemon thread renews the leases of everything made through it
    (and of whatever else is :meth:`hold`-ed), so other hosts leave them alone.
    """

    def __init__(
        self,
        source: SchemaSource | None = None,
        *,
        owner: str | None = None,
        kept: Callable[[Endpoint], bool] | None = None,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
    ) -> None:
        self.source = source or SchemaSource()
        self.owner = owner or owner_token()
        self.lease_seconds = lease_seconds
        self.leases = LeaseRenewer(lease_seconds)
        #: Which servers are kept for later runs: their worker databases are kept too.
        self.kept = kept
        self._lock = threading.Lock()
        self._databases: dict[tuple[str, str, int, str], IsolatedDatabases] = {}
        self._keyspaces: dict[tuple[str, int, str], RedisKeyspace] = {}

    def databases(self, endpoint: Endpoint) -> IsolatedDatabases:
        """This process's databases on the SQL server at ``endpoint``."""
        key = (endpoint.service, endpoint.host, endpoint.port, endpoint.user)
        with self._lock:
            found = self._databases.get(key)
            if found is None:
                keep = self.kept is not None and self.kept(endpoint)
                found = IsolatedDatabases(
                    endpoint,
                    self.source,
                    owner=self.owner,
                    keep=keep,
                    lease_seconds=self.lease_seconds,
                )
                self._databases[key] = found
                self.leases.hold(found)
            return found

    def keyspace(self, endpoint: Endpoint) -> RedisKeyspace:
        """This process's db index (or key prefix) on the Redis server at ``endpoint``."""
        key = (endpoint.host, endpoint.port, endpoint.user)
        with self._lock:
            found = self._keyspaces.get(key)
            if found is None:
                found = RedisKeyspace(endpoint, owner=self.owner, lease_seconds=self.lease_seconds)
                self._keyspaces[key] = found
                self.leases.hold(found)
            return found

    def hold(self, item: Renewable) -> None:
        """Renew ``item``'s lease with this workspace's until it closes (a RabbitMQ
        vhost, or anything of the user's with a ``renew()``)."""
        self.leases.hold(item)

    def keyspaces(self) -> list[RedisKeyspace]:
        """Every Redis keyspace made so far."""
        with self._lock:
            return list(self._keyspaces.values())

    def describe(self) -> list[str]:
        """A line per server: templates built or reused, databases made, Redis db indexes."""
        with self._lock:
            databases = list(self._databases.values())
            keyspaces = list(self._keyspaces.values())
        lines = [d.describe() for d in databases]
        for keyspace in keyspaces:
            where = f"redis {keyspace.endpoint.address}"
            if keyspace.db is None:
                continue
            lines.append(
                f"{where}: key prefix {keyspace.prefix!r}"
                if keyspace.prefix
                else f"{where}: db {keyspace.db}"
            )
        return lines

    def close(self) -> None:
        """Drop every database and give back every Redis db index; first error re-raised."""
        self.leases.stop()
        with self._lock:
            items: list[IsolatedDatabases | RedisKeyspace] = [
                *self._databases.values(),
                *self._keyspaces.values(),
            ]
            self._databases, self._keyspaces = {}, {}
        first: BaseException | None = None
        for item in items:
            try:
                item.close()
            except Exception as exc:
                first = first or exc
        if first is not None:
            raise first

    def __enter__(self) -> IsolationWorkspace:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
