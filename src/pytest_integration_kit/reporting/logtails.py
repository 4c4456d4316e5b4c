"""When a failing test's report carries the tail of a server's log.

Only when the failure involves the server: an exception of the service's driver in the
failure (SQLAlchemy raises its errors *from* the driver's, so the chain is walked), a
server that is no longer running, or ``-v``. An ``assert 0`` gets none.
"""

from __future__ import annotations

import sys
from typing import Any

__all__ = [
    "LOG_TAIL_LINES",
    "compose_log_sections",
    "involves_driver",
    "is_running",
    "wants_log_tail",
]

#: Lines of server log attached to a failing test's report.
LOG_TAIL_LINES = 40


def involves_driver(exc: BaseException | None, packages: tuple[str, ...]) -> bool:
    """Whether ``exc``, its causes, contexts or group members come from ``packages``."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if type(current).__module__.split(".", 1)[0] in packages:
            return True
        todo += [current.__cause__, current.__context__]
        todo += list(getattr(current, "exceptions", ()))
    return False


def is_running(server: Any) -> bool:
    """Whether a started server's process or container is still there (True if unknown)."""
    check = getattr(server, "is_alive", None)
    if callable(check):
        return bool(check())
    process = getattr(server, "process", None)
    if process is not None:
        return process.poll() is None
    container = getattr(server, "container", None)
    if container is not None:
        try:
            wrapped = container.get_wrapped_container()
            wrapped.reload()
        except Exception:
            return False
        return str(wrapped.status) == "running"
    return True


def wants_log_tail(
    *, exc: BaseException | None, packages: tuple[str, ...], server: Any, verbose: int
) -> bool:
    """Attach the log of ``server`` to a failure raising ``exc``?"""
    if verbose > 0:
        return True
    if involves_driver(exc, packages):
        return True
    return server is not None and not is_running(server)


def compose_log_sections(funcargs: dict[str, Any], verbose: int) -> list[tuple[str, str]]:
    """Report sections for a failing test's Compose environments: the log tail of each
    service that exited, died or turned unhealthy (of every service with ``-v``)."""
    module = sys.modules.get("pytest_integration_kit.backends.compose")
    if module is None:  # no Compose environment was made in this process
        return []
    sections = []
    for name, value in funcargs.items():
        if not isinstance(value, module.ComposeEnvironment):
            continue
        try:
            services = value.service_names() if verbose > 0 else value.failing_services()
        except Exception:  # noqa: S112 - the engine is gone: nothing to show
            continue
        for service in services:
            title = f"integration compose {name}: {service} log (last {LOG_TAIL_LINES} lines)"
            sections.append((title, value.logs(service, LOG_TAIL_LINES)))
    return sections
