"""Who owns a session's servers, and whether that owner is still alive.

A pid alone is not an identity: pids are reused. An owner is a pid, the host it runs
on and the process's start time (read with psutil), so a reaper can tell "the process
that started this is gone" from "some other process now has that pid". Where the
start time cannot be read, the pid alone is used.
"""

from __future__ import annotations

import os
import socket
from typing import NamedTuple

__all__ = ["START_LABEL", "Owner", "pid_alive", "process_start"]

#: The owner's start time. A new name: versions that wrote ``owner-start`` (a
#: different token) must not judge a live owner of this version dead, nor the reverse.
START_LABEL = "pytest-integration-kit.owner-started"


def process_start(pid: int) -> str:
    """A token that changes when ``pid`` is reused: its start time ('' if unknown)."""
    # Imported here: a run that starts no server and finds no other run's directory
    # never asks who owns what.
    import psutil  # noqa: PLC0415

    try:
        return f"{psutil.Process(pid).create_time():.2f}"
    except (psutil.Error, OSError):
        return ""


def pid_alive(pid: int) -> bool:
    """True when ``pid`` runs (a zombie counts as dead: it will never do anything)."""
    import psutil  # noqa: PLC0415 - see process_start

    try:
        return psutil.Process(pid).status() not in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)
    except psutil.NoSuchProcess:
        return False
    except (psutil.AccessDenied, OSError):
        return True


class Owner(NamedTuple):
    """The process that owns a session: its servers live as long as it does.

    A NamedTuple, not a frozen dataclass: every run's reaper pass imports this module,
    and a dataclass compiles its methods at import (issue #11).
    """

    pid: int
    host: str
    start: str

    @classmethod
    def current(cls) -> Owner:
        pid = os.getpid()
        return cls(pid, socket.gethostname(), process_start(pid))

    @classmethod
    def from_labels(cls, labels: dict[str, str]) -> Owner | None:
        """The owner recorded in container labels or a state file; None if incomplete."""
        try:
            pid = int(labels["pytest-integration-kit.owner-pid"])
            host = labels["pytest-integration-kit.owner-host"]
        except (KeyError, ValueError):
            return None
        # "owner-start" (boot id:ticks) was written by versions that read /proc: not
        # comparable with a psutil start time, so such an owner is judged by its pid.
        return cls(pid, host, labels.get(START_LABEL, ""))

    def labels(self) -> dict[str, str]:
        return {
            "pytest-integration-kit.owner-pid": str(self.pid),
            "pytest-integration-kit.owner-host": self.host,
            START_LABEL: self.start,
        }

    @property
    def on_this_host(self) -> bool:
        return self.host == socket.gethostname()

    def is_alive(self) -> bool:
        """False only when sure: the owner ran on this host and its process is gone.

        An owner on another host (a shared remote Docker engine) is never judged dead.
        """
        if not self.on_this_host:
            return True
        if not pid_alive(self.pid):
            return False
        return not self.start or process_start(self.pid) in ("", self.start)
