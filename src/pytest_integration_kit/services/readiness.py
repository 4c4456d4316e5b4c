"""Polling a server until a real protocol round trip succeeds."""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING

from pytest_integration_kit.errors import BackendUnavailable, ServerNotReady, ServerStartError

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["POLL_INTERVAL", "login_refused", "wait_until_ready"]

#: Seconds between probes. Small, so a fast server is used as soon as it answers.
POLL_INTERVAL = 0.05
#: Upper bound of one probe attempt, in seconds.
PROBE_TIMEOUT = 2.0
#: Seconds between asking whether the server still runs: for a container, a call to the
#: engine, which after every probe cost the engine and this process CPU that servers
#: starting at the same time need.
STATUS_INTERVAL = 0.5
#: What PostgreSQL, MySQL/MariaDB and Redis say when they refuse a login.
_LOGIN_REFUSED = re.compile(
    r"password authentication failed|no password supplied|Access denied for user|"
    r"WRONGPASS|NOAUTH|invalid username-password|Authentication required",
    re.IGNORECASE,
)


def login_refused(exc: BaseException) -> bool:
    """Did the server answer, and refuse the credentials? Waiting does not fix that."""
    return "Authentication" in type(exc).__name__ or bool(_LOGIN_REFUSED.search(str(exc)))


def wait_until_ready(
    probe: Callable[[float], str],
    *,
    what: str,
    timeout: float,
    log_tail: Callable[[], str],
    is_running: Callable[[], bool] = lambda: True,
    interval: float = POLL_INTERVAL,
    final: Callable[[BaseException], bool] = lambda exc: False,
) -> str:
    """Call ``probe(seconds)`` until it returns (its result, e.g. the server version).

    ``seconds`` bounds one attempt: never more than the time left, nor 2 s (a server
    that accepts TCP but stalls the handshake must not hold the loop past its deadline).

    A log line alone is never trusted: the official postgres image says "ready"
    twice, once for a socket-only bootstrap server. On timeout, or when the server
    process dies, the error carries the last probe error and the tail of the log; an
    error ``final`` says waiting cannot cure (a refused login) ends the wait at once.
    """
    deadline = time.monotonic() + timeout
    checked = time.monotonic()
    last_error: BaseException | None = None
    while True:
        left = deadline - time.monotonic()
        try:
            return probe(max(0.05, min(PROBE_TIMEOUT, left)))
        except (BackendUnavailable, ServerStartError):
            # A missing driver will not appear by waiting, nor will a start step that
            # failed (a warm container's password that could not be set) succeed.
            raise
        except Exception as exc:
            last_error = exc
            if final(exc):
                raise ServerNotReady(
                    f"{what} answered but refused: {_describe(exc)}\n"
                    "Not retried: check the user and password in the URL."
                ) from None
        now = time.monotonic()
        if now - checked >= STATUS_INTERVAL or now >= deadline:
            checked = now
            if not is_running():
                raise ServerStartError(
                    f"{what} exited before it was ready.\n"
                    f"Last probe error: {_describe(last_error)}\n"
                    f"Server log (tail):\n{log_tail()}"
                )
        if time.monotonic() >= deadline:
            raise ServerNotReady(
                f"{what} was not ready after {timeout:g} s "
                "(setting integration_startup_timeout).\n"
                f"Last probe error: {_describe(last_error)}\n"
                f"Server log (tail):\n{log_tail()}"
            )
        time.sleep(interval)


def _describe(exc: BaseException | None) -> str:
    if exc is None:
        return "none"
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}"
