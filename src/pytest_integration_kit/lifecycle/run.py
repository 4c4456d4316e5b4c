"""The run directory: how the processes of one run (xdist workers) share servers.

One directory per run, named by the run's session id, in a private per-user place
under the temp dir. It holds ``owner.json`` (who owns the run, for the reaper) and, per
server request, a lock file and a record. The first process that needs a server takes
the lock, starts it and writes the record; the others wait on the lock and attach.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from filelock import FileLock

from pytest_integration_kit.lifecycle.owner import Owner
from pytest_integration_kit.lifecycle.records import (
    ServerRecord,
    private_dir,
    read_json,
    write_json,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["RunDirectory", "runs_root"]

OWNER_FILE = "owner.json"


def runs_root() -> Path:
    """Where run directories live: private to this user, under the temp dir."""
    uid = os.geteuid() if hasattr(os, "geteuid") else 0
    return Path(tempfile.gettempdir()) / f"pytest-integration-kit.runs-{uid}"


class RunDirectory:
    """The shared state of one run, keyed by its session id."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    def session_id(self) -> str:
        return self.path.name

    @classmethod
    def create(cls, session_id: str, owner: Owner, root: Path | None = None) -> RunDirectory:
        """Make the directory of a new run and record its owner."""
        base = private_dir(root or runs_root())
        run = cls(private_dir(base / session_id))
        write_json(run.path / OWNER_FILE, {"session": session_id, **owner.labels()})
        return run

    @classmethod
    def open(cls, session_id: str, root: Path | None = None) -> RunDirectory:
        """The directory of a run another process (the xdist controller) created."""
        return cls(private_dir((root or runs_root()) / session_id))

    @classmethod
    def all(cls, root: Path | None = None) -> Iterator[RunDirectory]:
        base = root or runs_root()
        if base.is_dir():
            for path in sorted(base.iterdir()):
                if path.is_dir():
                    yield cls(path)

    def register_process(self, name: str, owner: Owner) -> None:
        """Record another process of the run (an xdist worker), so that a reaper can end
        it if the run's owner dies and leaves it orphaned."""
        processes = private_dir(self.path / "processes")
        write_json(processes / f"{name}.json", owner.labels())

    def processes(self) -> list[Owner]:
        found = []
        for path in sorted((self.path / "processes").glob("*.json")):
            data = read_json(path)
            owner = Owner.from_labels(data) if data is not None else None
            if owner is not None:
                found.append(owner)
        return found

    def owner(self) -> Owner | None:
        data = read_json(self.path / OWNER_FILE)
        return Owner.from_labels(data) if data is not None else None

    def lock(self, key: str, timeout: float) -> FileLock:
        """The lock guarding the start of the server ``key`` in this run."""
        return FileLock(self.path / f"{key}.lock", timeout=timeout)

    def read(self, key: str) -> ServerRecord | None:
        data = read_json(self.path / f"{key}.json")
        return ServerRecord.from_json(data) if data is not None else None

    def write(self, record: ServerRecord) -> None:
        write_json(self.path / f"{record.key}.json", record.to_json())

    def records(self) -> list[ServerRecord]:
        """Every record of the run, oldest first."""
        found: list[ServerRecord] = []
        for path in self.path.glob("*.json"):
            if path.name == OWNER_FILE:
                continue
            data = read_json(path)
            if data is not None:
                found.append(ServerRecord.from_json(data))
        return sorted(found, key=lambda r: r.started_at)

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
