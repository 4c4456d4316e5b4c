"""A Compose environment shared by the processes of one run, or kept for later runs.

Shared: the first process that needs the environment brings it up under a lock of the
run directory, and every process using it is listed beside the lock
(``compose-<project>.users``: pid and start time, a line each); the last one out takes
it down. A process that died is struck off by the next one to look, so a crashed worker
never holds it up; when the whole run dies, the containers' session and owner labels let
the reaper remove them.

Kept (``integration_reuse``): the project is named after the compose file's path and its
containers carry the reuse label with a hash of the file and the chosen services. The
next run attaches when every service is up with that hash; otherwise it takes the old
project down and brings it up anew. A kept project is never taken down at the end; its
containers are listed and removed like the other kept servers.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from pytest_integration_kit.lifecycle.owner import Owner

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from filelock import BaseFileLock

    from pytest_integration_kit.backends.compose import ComposeEnvironment

__all__ = ["kept_environment", "shared_environment"]


def _users(path: Path) -> list[Owner]:
    """The live processes listed in ``path`` (a dead one, or a reused pid, is dropped)."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return []
    here = Owner.current().host
    owners = []
    for line in lines:
        pid, _, start = line.partition(" ")
        if pid.isdigit():
            owners.append(Owner(int(pid), here, start))
    return [owner for owner in owners if owner.is_alive()]


def _write_users(path: Path, owners: list[Owner]) -> None:
    if owners:
        path.write_text("".join(f"{o.pid} {o.start}\n" for o in owners))
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


@contextlib.contextmanager
def shared_environment(
    environment: ComposeEnvironment, lock: BaseFileLock, users: Path
) -> Iterator[ComposeEnvironment]:
    """Up (or attached) while this process uses it; down when the last user leaves."""
    me = Owner.current()
    with lock:
        others = [o for o in _users(users) if o.pid != me.pid]
        if not (others and environment.attach()):
            environment.up()
        _write_users(users, [*others, me])
    try:
        yield environment
    finally:
        with lock:
            others = [o for o in _users(users) if o.pid != me.pid]
            _write_users(users, others)
            if others:
                environment.close()
            else:
                environment.down()


@contextlib.contextmanager
def kept_environment(
    environment: ComposeEnvironment, lock: BaseFileLock
) -> Iterator[ComposeEnvironment]:
    """Attached when kept and unchanged, else brought up anew; left up at the end."""
    with lock:
        if not environment.attach():
            if environment.exists():
                environment.down()  # another file (or services) than the kept one
            environment.up()
    try:
        yield environment
    finally:
        environment.close()
