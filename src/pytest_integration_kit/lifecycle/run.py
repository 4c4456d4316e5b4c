"""The run directory: how the processes of one run (xdist workers) share servers.

One directory per run, named by the run's session id, in a private per-user place
under the temp dir (the *runs root*). It holds ``owner.json`` (who owns the run, for
the reaper) and, per server request, a lock file and a record. The first process that
needs a server takes the lock, starts it and writes the record; the others wait on the
lock and attach. It is made when the first server is needed: a run that uses none
makes nothing.

The runs root has a fixed name in a shared directory, so anyone could plant it first:
it is used only when it is this user's own private directory (see
:mod:`~pytest_integration_kit.lifecycle.paths`); otherwise the run uses a new private
directory beside it (``<name>-XXXXXXXX``, made by mkdtemp), and says so.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from pytest_integration_kit.lifecycle.owner import Owner
from pytest_integration_kit.lifecycle.paths import (
    UnsafeDirectory,
    is_private_dir,
    private_dir,
    private_temp_dir,
    read_json,
    write_json,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

    from filelock import FileLock

    from pytest_integration_kit.lifecycle.records import ServerRecord

__all__ = [
    "LOCK_MARGIN",
    "RunDirectory",
    "choose_runs_root",
    "discard_fallback_root",
    "runs_root",
    "runs_roots",
]

OWNER_FILE = "owner.json"

#: Seconds, beyond the start-up timeout, a process waits for another to start a server
#: (on a run's lock, or on a kept server's slot).
LOCK_MARGIN = 120.0


def runs_root() -> Path:
    """Where run directories live: private to this user, under the temp dir."""
    uid = os.geteuid() if hasattr(os, "geteuid") else 0
    return Path(tempfile.gettempdir()) / f"pytest-integration-kit.runs-{uid}"


def choose_runs_root() -> tuple[Path, str | None]:
    """The runs root this run uses, made if missing, and a note when it is a fallback.

    The usual one when it is safe; else (a symlink, another user's or a shared
    directory there) a new private directory beside it, which the reaper finds too.
    """
    usual = runs_root()
    try:
        return private_dir(usual), None
    except UnsafeDirectory as exc:
        fallback = private_temp_dir(prefix=f"{usual.name}-", parent=usual.parent)
        return fallback, f"{exc}; this run uses {fallback} instead"


def runs_roots() -> list[Path]:
    """Every runs root of this user that is safe to read: the usual one and fallbacks."""
    usual = runs_root()
    candidates = [usual, *sorted(usual.parent.glob(f"{usual.name}-*"))]
    return [path for path in candidates if is_private_dir(path)]


class RunDirectory:
    """The shared state of one run, keyed by its session id."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    def session_id(self) -> str:
        return self.path.name

    @classmethod
    def create(cls, session_id: str, owner: Owner, root: Path | None = None) -> RunDirectory:
        """Make (or join) the directory of a run in ``root`` and record its owner.

        Any process of the run may be the first to need it; all record the same owner.
        """
        base = private_dir(root) if root is not None else choose_runs_root()[0]
        run = cls(private_dir(base / session_id))
        if not (run.path / OWNER_FILE).exists():
            write_json(run.path / OWNER_FILE, {"session": session_id, **owner.labels()})
        return run

    @classmethod
    def all(cls, root: Path | None = None) -> Iterator[RunDirectory]:
        """The runs in ``root``, or in every safe runs root of this user."""
        for base in [root] if root is not None else runs_roots():
            if not is_private_dir(base):
                continue
            for path in sorted(base.iterdir()):
                if path.is_dir() and not path.is_symlink():
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
        # Imported here: a run that starts no server takes no lock.
        from filelock import FileLock  # noqa: PLC0415

        return FileLock(self.path / f"{key}.lock", timeout=timeout)

    def read(self, key: str) -> ServerRecord | None:
        data = read_json(self.path / f"{key}.json")
        if data is None:
            return None
        # Imported here: the reaper reads owners only, at every run, in a thread.
        from pytest_integration_kit.lifecycle.records import ServerRecord  # noqa: PLC0415

        return ServerRecord.from_json(data)

    def write(self, record: ServerRecord) -> None:
        write_json(self.path / f"{record.key}.json", record.to_json())

    def records(self) -> list[ServerRecord]:
        """Every record of the run, oldest first."""
        from pytest_integration_kit.lifecycle.records import ServerRecord  # noqa: PLC0415

        found: list[ServerRecord] = []
        for path in self.path.glob("*.json"):
            if path.name == OWNER_FILE:
                continue
            data = read_json(path)
            if data is not None:
                found.append(ServerRecord.from_json(data))
        return sorted(found, key=lambda r: r.started_at)

    def remove(self) -> None:
        """Remove the run's directory, and its runs root when that was a fallback."""
        shutil.rmtree(self.path, ignore_errors=True)
        discard_fallback_root(self.path.parent)


def discard_fallback_root(root: Path) -> None:
    """Remove ``root`` if it is an empty fallback runs root (see :func:`choose_runs_root`)."""
    if root.name.startswith(f"{runs_root().name}-"):
        with contextlib.suppress(OSError):
            root.rmdir()  # only when empty
