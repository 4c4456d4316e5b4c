"""Servers kept between runs (``integration_reuse``), in a per-user cache directory.

Each kept server has a *slot* (the project and the fixture's request) and a record
carrying the hash of the configuration it was started with. A later run with the same
slot attaches when the hash matches and the server answers; otherwise the old server
is removed and replaced. ``python -m pytest_integration_kit kept remove`` removes all.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from pytest_integration_kit.backends.labels import REUSE_LABEL
from pytest_integration_kit.errors import ConfigError, ServerStartError
from pytest_integration_kit.lifecycle.paths import UnsafeDirectory, is_private_dir, private_dir
from pytest_integration_kit.lifecycle.records import ServerRecord, digest, read_json, write_json

if TYPE_CHECKING:
    from filelock import FileLock

__all__ = ["REUSE_LABEL", "KeptServers"]


class KeptServers:
    """The registry of kept servers: one record per slot."""

    def __init__(self, cache_dir: Path) -> None:
        self.cache_dir = cache_dir
        self.path = cache_dir / "kept"

    def _ensure(self) -> Path:
        # The cache dir itself may be the user's own choice: create it, never chmod it.
        self.cache_dir.mkdir(parents=True, exist_ok=True, mode=0o711)
        return private_dir(self.path, 0o711)

    def check_usable(self) -> None:
        """Raise :class:`ConfigError` (at start-up, naming the setting) when kept servers
        cannot be recorded in the cache dir: missing and not creatable, or read-only."""
        try:
            path = self._ensure()
            probe = path / f".probe-{os.getpid()}"
            os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600))
            probe.unlink()
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            where = f" ({exc.filename})" if exc.filename else ""
            raise ConfigError(
                f"integration_cache_dir: {self.cache_dir} cannot be used: {reason}{where}. "
                "integration_reuse records kept servers there, so it needs a directory "
                "this user can create and write to; set integration_cache_dir / "
                "INTEGRATION_CACHE_DIR / --integration-cache-dir to one, or turn "
                "integration_reuse off"
            ) from None

    @property
    def servers_dir(self) -> Path:
        """Parent of kept local servers' work directories (enterable by their users).

        In the temp dir, not the cache dir: a kept server does not outlive a reboot. Its
        name is fixed (``kept remove`` finds it again), so it is used only when it is
        this user's own private directory.
        """
        try:
            return private_dir(self._servers_path, 0o711)
        except UnsafeDirectory as exc:
            raise ServerStartError(
                f"cannot keep a local server for integration_reuse: {exc}. Remove it, or "
                "set TMPDIR to a directory of your own"
            ) from None

    @property
    def _servers_path(self) -> Path:
        uid = os.geteuid() if hasattr(os, "geteuid") else 0
        return Path(tempfile.gettempdir()) / f"pik-kept-{uid}-{digest(str(self.cache_dir))[:8]}"

    def lock(self, slot: str, timeout: float) -> FileLock:
        from filelock import FileLock  # noqa: PLC0415 - see run.RunDirectory.lock

        return FileLock(self._ensure() / f"{slot}.lock", timeout=timeout)

    def read(self, slot: str) -> ServerRecord | None:
        data = read_json(self.path / f"{slot}.json")
        return ServerRecord.from_json(data) if data is not None else None

    def write(self, record: ServerRecord) -> None:
        write_json(self._ensure() / f"{record.key}.json", record.to_json())

    def forget(self, slot: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.path / f"{slot}.json").unlink()

    def all(self) -> list[ServerRecord]:
        if not self.path.is_dir():
            return []
        found = []
        for path in self.path.glob("*.json"):
            data = read_json(path)
            if data is not None:
                found.append(ServerRecord.from_json(data))
        return sorted(found, key=lambda r: r.started_at)

    def remove_all(self) -> list[ServerRecord]:
        """Stop and forget every kept server; returns what was removed."""
        from pytest_integration_kit.backends.local import remove_workdir  # noqa: PLC0415
        from pytest_integration_kit.lifecycle.attached import (  # noqa: PLC0415
            attach,
            stop_process_tree,
        )

        removed = []
        for record in self.all():
            with self.lock(record.key, timeout=120):
                if record.endpoint is not None:
                    attach(record).stop()
                self.forget(record.key)
            removed.append(record)
        # Directories of kept local servers whose start was interrupted (no record).
        if is_private_dir(self._servers_path):
            for workdir in self._servers_path.iterdir():
                stop_process_tree(workdir, grace=5)
                remove_workdir(workdir)
            with contextlib.suppress(OSError):
                self._servers_path.rmdir()
        return removed


def age(record: ServerRecord) -> str:
    """How long ago the record's server was started, in words."""
    seconds = max(0.0, time.time() - record.started_at)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
