"""The wire side of a Redis keyspace's clean: its commands written as packed, its five
replies read back, on the keyspace's own single connection.

``SELECT 0``, ``SET <canary> NX EX`` (a no-op while the canary is there, puts it back
when it is gone), ``SELECT <n>``, ``DBSIZE``, ``FLUSHDB ASYNC`` (frees a large keyspace
off the server's main thread). The commands are packed once, when the keyspace claims
its db index, and written as they are: redis-py's pipeline packs them again and reads
the replies through its response callbacks and bookkeeping, three times the CPU of the
round trip itself. All five replies are read, so the connection is left on its db
index with nothing unread.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pytest_integration_kit.isolation.errors import IsolationError

if TYPE_CHECKING:
    import redis as redis_sync

__all__ = ["outcome", "own_connection", "read_replies", "round_trip"]


def round_trip(conn: Any, packed: list[bytes]) -> list[object]:
    """Write the clean and read its replies; a connection error is retried as redis-py's
    own commands are (``retry``), after a reconnect, which selects the db index again."""

    def once() -> list[object]:
        conn.send_packed_command(packed)
        return read_replies(conn)

    def reconnect(_error: Exception) -> None:
        conn.disconnect()

    try:
        return conn.retry.call_with_retry(once, reconnect)  # type: ignore[no-any-return]
    except BaseException:
        conn.disconnect()  # replies may be left unread
        raise


def own_connection(client: redis_sync.Redis) -> Any:
    """The keyspace's client's one connection (it is made a single-connection client).

    Typed Any: redis-py's Connection methods carry no annotations.
    """
    conn = client.connection
    if conn is None:
        raise IsolationError("the Redis keyspace has no connection of its own")
    return conn


def read_replies(conn: Any) -> list[object]:
    """The clean's five replies; an error reply is kept in its place (those after it
    are due too), so the connection is left with nothing unread."""
    from redis.exceptions import ResponseError  # noqa: PLC0415 - optional dependency, imported when used

    replies: list[object] = []
    for _ in range(5):
        try:
            replies.append(conn.read_response())
        except ResponseError as exc:
            replies.append(exc)
    return replies


def outcome(replies: list[object]) -> tuple[bool, int]:
    """What the clean's replies say: whether the canary was gone, how many keys there were."""
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    _, gone, _, size, _ = replies
    if not isinstance(size, int):
        raise IsolationError(f"DBSIZE replied {size!r}")
    return gone is not None, size
