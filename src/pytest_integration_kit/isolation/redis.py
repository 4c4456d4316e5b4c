"""A Redis keyspace of this process's own, emptied after each test.

Each process claims a free db index (1…N-1) with a ``SET NX`` claim key in db 0, so
xdist workers and concurrent sessions on one shared server never meet. Where only
db 0 exists (managed Redis, cluster), it falls back to a key prefix and cleans with
``SCAN`` + ``UNLINK``. Never ``FLUSHALL``.

A test that runs ``FLUSHALL`` (or ``FLUSHDB`` on db 0) on a shared server empties every
process's data. Db 0 holds a *canary* key per keyspace (its claim key, or a key of its
own in prefix mode): after each test it is looked at, whichever client — the kit's or
one the code under test built from the URL — sent the command. A test that used a
client fixture has it looked at by :meth:`RedisKeyspace.clean`, in the clean's own
round trip; any other test by :meth:`RedisKeyspace.wiped`.
"""

from __future__ import annotations

import contextlib
import threading
from contextlib import contextmanager
from typing import TYPE_CHECKING

from pytest_integration_kit.isolation.errors import IsolationError
from pytest_integration_kit.isolation.naming import owner_token
from pytest_integration_kit.isolation.ownership import DEFAULT_LEASE_SECONDS
from pytest_integration_kit.isolation.redis_clean import (
    outcome,
    own_connection,
    read_replies,
    round_trip,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

    import redis as redis_sync
    import redis.asyncio as redis_async

    from pytest_integration_kit.services.endpoint import Endpoint

__all__ = ["CLAIM_PREFIX", "RedisKeyspace"]

#: Claim keys live in db 0: ``pik:claim:db:<n>`` holding the owner token.
CLAIM_PREFIX = "pik:claim:db:"
#: Prefix mode's canary in db 0 (db mode's canary is the claim key itself).
CANARY_PREFIX = "pik:canary:"


class RedisKeyspace:
    """This process's db index (or key prefix) on one Redis server."""

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        owner: str | None = None,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
    ) -> None:
        self.endpoint = endpoint
        self.owner = owner or owner_token()
        #: The claim key expires this long after its last :meth:`renew` (Redis's clock):
        #: a crashed owner's db index is free again after it, whichever host asks.
        self.claim_seconds = max(1, round(lease_seconds))
        self._lock = threading.Lock()
        self.db: int | None = None
        #: Non-empty only in prefix mode: every key of the tests must start with it.
        self.prefix = ""
        self._client: redis_sync.Redis | None = None
        #: A connection to db 0, opened by the first :meth:`wiped`.
        self._base: redis_sync.Redis | None = None
        #: One connection pool per client options: a test's client finds its connection
        #: already open, authenticated and on the db index (no handshake per test).
        self._pools: dict[tuple[tuple[str, object], ...], redis_sync.ConnectionPool] = {}
        #: Tests' clients (:meth:`cleaned_after`) whose clean is still to come.
        self._cleans_due = 0
        #: Whether a clean found the canary gone since the last :meth:`take_look`
        #: (None: no clean looked).
        self._look: bool | None = None
        #: The db-index clean's commands, packed once at :meth:`claim` (see :meth:`clean`).
        self._clean_packed: list[bytes] = []
        #: One clean at a time on the keyspace's connection (a test's own thread, or an
        #: event loop's running elsewhere).
        self._clean_lock = threading.Lock()
        #: A clean sent by :meth:`clean_later` whose replies :meth:`settle` has yet to read.
        self._unread = False
        #: That clean's replies could not be read: :meth:`settle` cleans again.
        self._redo = False

    def _connect(self, db: int, *, single: bool = False) -> redis_sync.Redis:
        import redis as redis_sync  # noqa: PLC0415 - optional dependency, imported when used

        return redis_sync.Redis(
            host=self.endpoint.host,
            port=self.endpoint.port,
            username=self.endpoint.user or None,
            password=self.endpoint.password or None,
            db=db,
            single_connection_client=single,
        )

    def claim(self) -> int:
        """Claim a free db index (emptied first); 0 with a key prefix when there is none."""
        with self._lock:
            if self.db is not None:
                return self.db
            base = self._connect(0)
            try:
                count = self._database_count(base)
                for index in range(1, count):
                    key = f"{CLAIM_PREFIX}{index}"
                    if base.set(key, self.owner, nx=True, ex=self.claim_seconds):
                        self.db = index
                        break
                else:
                    self.db = 0
                    self.prefix = f"pik:{self.owner}:"
                    base.set(self._canary_key(), self.owner, ex=self.claim_seconds)
            finally:
                base.close()
            # One connection of its own: the clean writes its commands on it directly.
            self._client = self._connect(self.db, single=True)
            if self.db:
                self._client.flushdb()  # a crashed owner's leftovers
                self._clean_packed = self._client.connection.pack_commands(  # type: ignore[union-attr]
                    [
                        ("SELECT", 0),
                        ("SET", self._canary_key(), self.owner, "NX", "EX", self.claim_seconds),
                        ("SELECT", self.db),
                        ("DBSIZE",),
                        ("FLUSHDB", "ASYNC"),
                    ]
                )
            return self.db

    def _canary_key(self) -> str:
        """The key in db 0 whose loss means db 0 was emptied."""
        return f"{CANARY_PREFIX}{self.owner}" if self.prefix else f"{CLAIM_PREFIX}{self.db}"

    def wiped(self) -> bool:
        """Whether db 0 lost this keyspace's canary since the last look: ``FLUSHALL`` or
        ``FLUSHDB`` on db 0 ran on the server, emptying every process's data there.

        Puts the canary (and so the claim on the db index) back. One round trip (none
        when a clean since the last look already saw it gone); False until the
        keyspace is claimed.
        """
        if self.take_look():
            return True
        with self._lock:
            if self.db is None or self._client is None:
                return False
            if self._base is None:
                self._base = self._connect(0)
            base, key = self._base, self._canary_key()
        if base.exists(key):
            return False
        base.set(key, self.owner, nx=True, ex=self.claim_seconds)
        return True

    @property
    def clean_due(self) -> bool:
        """Whether a test's client is out (:meth:`cleaned_after`): its clean will look at
        the canary, so the look after the test can wait for it (:meth:`take_look`)."""
        with self._lock:
            return self._cleans_due > 0

    def take_look(self) -> bool | None:
        """What the cleans since the last call saw: True if one found the canary gone
        (and put it back), None if none looked."""
        self.settle()
        with self._lock:
            look, self._look = self._look, None
        return look

    @contextmanager
    def cleaned_after(self, *, later: bool = False) -> Iterator[None]:
        """Around a test's use of this keyspace: :meth:`clean` at the end, which also
        looks at the canary; till then :attr:`clean_due` says so.

        ``later``: :meth:`clean_later` instead, where nothing needs the canary's look
        as the test ends (a server of this process's own).
        """
        self.settle()
        with self._lock:
            self._cleans_due += 1
        try:
            yield
        finally:
            with self._lock:
                self._cleans_due -= 1
            if later:
                self.clean_later()
            else:
                self.clean()

    def renew(self) -> None:
        """Push the claim's (or canary's) expiry ``claim_seconds`` ahead, if still ours.

        A missing key is left missing: :meth:`wiped` reports it and puts it back.
        """
        with self._lock:
            if self.db is None:
                return
            key = self._canary_key()
        base = self._connect(0)
        try:
            if base.get(key) == self.owner.encode():
                base.expire(key, self.claim_seconds)
        finally:
            base.close()

    def _database_count(self, client: redis_sync.Redis) -> int:
        from redis.exceptions import ResponseError  # noqa: PLC0415 - optional dependency, imported when used

        try:
            value = client.config_get("databases").get("databases")
            return int(value) if value is not None else 1
        except ResponseError:  # CONFIG is disabled on many managed servers
            probe = self._connect(1)
            try:
                probe.ping()  # selecting db 1 on connect fails where only db 0 exists
            except ResponseError:
                return 1
            finally:
                probe.close()
            return 16

    def _connection(self, options: dict[str, object]) -> dict[str, object]:
        """Where and as whom both clients connect: this process's db index."""
        return {
            "host": self.endpoint.host,
            "port": self.endpoint.port,
            "username": self.endpoint.user or None,
            "password": self.endpoint.password or None,
            "db": self.claim(),
            **options,
        }

    def client(self, client_class: type | None = None, **options: object) -> redis_sync.Redis:
        """A new client (of ``client_class``, a ``redis.Redis`` subclass) on this db index.

        It stands on a connection pool shared by clients with equal options: closing
        the client leaves the pool's connections open for the next test's client;
        :meth:`close` closes them. Options that cannot be compared (a ``retry`` object,
        say) get a pool of their own, closed with the client.
        """
        import redis as redis_sync  # noqa: PLC0415 - optional dependency, imported when used

        self.settle()
        cls = client_class or redis_sync.Redis
        try:
            key = tuple(sorted(options.items()))
            hash(key)
        except TypeError:
            return cls(**self._connection(options))  # type: ignore[no-any-return]
        with self._lock:
            pool = self._pools.get(key)
        if pool is None:
            pool = redis_sync.ConnectionPool(**self._connection(options))  # type: ignore[arg-type]
            with self._lock:
                pool = self._pools.setdefault(key, pool)
        return cls(connection_pool=pool)  # type: ignore[no-any-return]

    def async_client(
        self, client_class: type | None = None, **options: object
    ) -> redis_async.Redis:
        """A new asyncio client (of ``client_class``) on this process's db index."""
        import redis.asyncio as redis_async  # noqa: PLC0415 - optional dependency, imported when used

        self.settle()
        cls = client_class or redis_async.Redis
        return cls(**self._connection(options))  # type: ignore[no-any-return]

    def clean(self) -> int:
        """Empty this keyspace; returns how many keys there were.

        On a db index one round trip, which also looks at db 0's canary and puts it back
        if it is gone; :meth:`take_look` tells what it saw.
        """
        self.settle()
        return self._clean_now()

    def _clean_now(self) -> int:
        self.claim()
        with self._lock:
            client, db, key = self._client, self.db, self._canary_key()
        if client is None or db is None:
            raise IsolationError("the Redis keyspace is closed")
        if self.prefix:
            keys = list(client.scan_iter(match=self.prefix + "*", count=1000))
            for start in range(0, len(keys), 1000):
                client.unlink(*keys[start : start + 1000])
            gone = client.set(key, self.owner, nx=True, ex=self.claim_seconds)
            size = len(keys)
        else:
            gone, size = self._clean_db(client)
        with self._lock:
            self._look = bool(self._look) or bool(gone)
        return int(size)

    def _clean_db(self, client: redis_sync.Redis) -> tuple[bool, int]:
        """The db-index clean: one round trip on the keyspace's own connection
        (:func:`~pytest_integration_kit.isolation.redis_clean.round_trip`)."""
        conn = own_connection(client)
        with self._clean_lock:
            replies = round_trip(conn, self._clean_packed)
        return outcome(replies)

    def clean_later(self) -> None:
        """:meth:`clean`, its replies read by the next :meth:`settle`: the server empties
        the keyspace while the caller goes on (the next test's client settles first).

        Only on a db index (a key prefix is emptied as it is scanned); a send that fails
        falls back to :meth:`clean`, with its retries.
        """
        while True:
            self.settle()
            self.claim()
            with self._lock:
                client = self._client if self.db and not self.prefix else None
            if client is None:
                self._clean_now()
                return
            conn = own_connection(client)
            with self._clean_lock:
                if self._unread:  # another thread's clean went first: read it, then send
                    continue
                try:
                    conn.send_packed_command(self._clean_packed)
                except Exception:
                    conn.disconnect()
                else:
                    self._unread = True
                    return
            self._clean_now()
            return

    def settle(self) -> None:
        """Read the replies of the clean :meth:`clean_later` sent, if one is due: after
        it the keyspace is empty. A read that fails does the clean again (it is
        idempotent); if that fails too, every settle tries again and raises until one
        succeeds, so the next user of the keyspace hears of it."""
        if not (self._unread or self._redo):  # the common case, without a lock
            return
        with self._lock:
            client = self._client
        replies = None
        with self._clean_lock:
            if self._unread:
                self._unread = False
                if client is not None:
                    conn = own_connection(client)
                    try:
                        replies = read_replies(conn)
                    except Exception:
                        conn.disconnect()
                        self._redo = True
        if replies is not None:
            try:
                gone, _ = outcome(replies)
            except Exception:  # an error reply: done again at once, and said if it fails
                self._redo = True
            else:
                with self._lock:
                    self._look = bool(self._look) or gone
        if self._redo and client is not None:
            self._redo = False
            try:
                self._clean_now()
            except BaseException:
                self._redo = True
                raise

    def close(self) -> None:
        """Empty the keyspace and give the db index back."""
        with contextlib.suppress(Exception):  # the flush below tries again, and says why
            self.settle()
        with self._lock:
            client, self._client = self._client, None
            db, self.db = self.db, None
            self._clean_packed = []
            pools, self._pools = list(self._pools.values()), {}
            prefix = self.prefix
            if self._base is not None:
                self._base.close()
                self._base = None
        for pool in pools:
            pool.disconnect()
        if client is None or db is None:
            return
        try:
            if db:
                client.flushdb()
                base = self._connect(0)
                try:
                    key = f"{CLAIM_PREFIX}{db}"
                    if base.get(key) == self.owner.encode():
                        base.delete(key)
                finally:
                    base.close()
            else:
                keys = list(client.scan_iter(match=prefix + "*", count=1000))
                if keys:
                    client.unlink(*keys)
                client.delete(f"{CANARY_PREFIX}{self.owner}")
        finally:
            client.close()
