"""Who owns a session's servers, and whether that owner is still alive.

A pid alone is not an identity: pids are reused. An owner is a pid, the host it runs
on and the process's start time (clock ticks since boot, with the boot id), so a
reaper can tell "the process that started this is gone" from "some other process now
has that pid". On a host where start times cannot be read, the pid alone is used.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Final

__all__ = ["Owner", "process_start"]

PROC: Final = Path("/proc")


def _boot_id() -> str:
    try:
        return (PROC / "sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _stat_fields(pid: int) -> list[str] | None:
    """/proc/<pid>/stat split after the command name (which may hold spaces)."""
    try:
        raw = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    return raw.rsplit(")", 1)[1].split()


def process_start(pid: int) -> str:
    """A token that changes when ``pid`` is reused: boot id + start ticks ('' if unknown)."""
    fields = _stat_fields(pid)
    if fields is None or len(fields) < 20:
        return ""
    # Field 22 of stat is the start time; fields[0] here is field 3 (the state).
    return f"{_boot_id()}:{fields[19]}"


def pid_alive(pid: int) -> bool:
    """True when ``pid`` runs (a zombie counts as dead: it will never do anything)."""
    fields = _stat_fields(pid)
    if fields is not None:
        return fields[0] not in ("Z", "X")
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True)
class Owner:
    """The process that owns a session: its servers live as long as it does."""

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
        return cls(pid, host, labels.get("pytest-integration-kit.owner-start", ""))

    def labels(self) -> dict[str, str]:
        return {
            "pytest-integration-kit.owner-pid": str(self.pid),
            "pytest-integration-kit.owner-host": self.host,
            "pytest-integration-kit.owner-start": self.start,
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
        return not (self.start and process_start(self.pid) not in ("", self.start))
