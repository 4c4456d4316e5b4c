"""Warm local start: initialise a data directory once, copy it for every later server.

``initdb`` or ``mariadb-install-db`` costs most of a local server's start. The first
server of a given service, binaries and init command runs it and leaves a copy in the
cache dir; later servers copy that instead. PostgreSQL bakes the superuser's password
into its data directory, so an entry also keeps the credentials it was made with and
servers started from it use them (the cache is private to the user; servers listen on
127.0.0.1 only).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from pytest_integration_kit.lifecycle.paths import private_dir
from pytest_integration_kit.lifecycle.records import digest, read_json, write_json
from pytest_integration_kit.services.launch import Credentials

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

__all__ = ["WarmDataDirs", "WarmEntry", "WarmStart"]

META = "meta.json"
#: Bump when the layout of an entry changes.
LAYOUT = 1


class WarmEntry:
    """One cached initialised data directory, and how it was made."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    def data(self) -> Path:
        return self.path / "data"

    def meta(self) -> dict[str, object] | None:
        return read_json(self.path / META)


class WarmStart:
    """The warm cache as one server's start sees it."""

    def __init__(self, cache: WarmDataDirs, key: str, credentials: Credentials) -> None:
        self.cache = cache
        self.key = key
        self.credentials = credentials
        #: Whether the data directory was copied rather than initialised.
        self.hit = False
        #: Whether the entry keeps the credentials (they are baked into it).
        self.keep = True

    def initialise(
        self, command: Sequence[str], *, workdir: Path, output: Path, run: Callable[[], None]
    ) -> None:
        self.hit = self.cache.initialise(
            self.key,
            command=command,
            workdir=workdir,
            output=output,
            credentials=dataclasses.asdict(self.credentials) if self.keep else {},
            run=run,
        )


class WarmDataDirs:
    """The cache of initialised data directories, keyed by service and binaries."""

    def __init__(self, cache_dir: Path) -> None:
        self.path = cache_dir / "warm"

    def key(self, service: str, binaries: Mapping[str, Path]) -> str:
        """Service, binaries (path, size, mtime) and layout: what an entry must match."""
        parts: list[object] = [LAYOUT, service]
        for name, path in sorted(binaries.items()):
            with contextlib.suppress(OSError):
                info = path.stat()
                parts += [name, str(path), info.st_size, info.st_mtime_ns]
        return f"{service}-{digest(*parts)}"

    def entry(self, key: str) -> WarmEntry:
        return WarmEntry(self.path / key)

    def starter(
        self,
        service: str,
        binaries: Mapping[str, Path],
        credentials: Credentials,
        *,
        keep: bool = True,
    ) -> WarmStart:
        """What the local backend uses for one server: the credentials to start it with
        and the initialiser of its data directory.

        With ``keep`` (the password is baked into the data directory) they are the
        entry's, when there is one; otherwise the fresh ``credentials``, never stored.
        """
        key = self.key(service, binaries)
        cached = self.credentials(key) if keep else None
        start = WarmStart(self, key, Credentials(**cached) if cached else credentials)
        start.keep = keep
        return start

    def credentials(self, key: str) -> dict[str, str] | None:
        """The credentials the entry was made with (None when there is no entry)."""
        meta = self.entry(key).meta()
        found = meta.get("credentials") if meta else None
        return {str(k): str(v) for k, v in found.items()} if isinstance(found, dict) else None

    def initialise(
        self,
        key: str,
        *,
        command: Sequence[str],
        workdir: Path,
        output: Path,
        credentials: Mapping[str, str],
        run: Callable[[], None],
    ) -> bool:
        """Fill ``output`` from the entry when it was made by the same command; else
        ``run()`` the command and keep a copy. True when the copy was used."""
        normalised = [part.replace(str(workdir), "<workdir>") for part in command]
        entry = self.entry(key)
        meta = entry.meta()
        if meta is not None and meta.get("command") == normalised and entry.data.is_dir():
            if output.exists():
                shutil.rmtree(output)
            try:
                _copy(entry.data, output)
            except (OSError, subprocess.CalledProcessError):
                shutil.rmtree(output, ignore_errors=True)  # cold start then
            else:
                return True
        run()
        with contextlib.suppress(OSError):
            self._store(key, output, normalised, credentials)
        return False

    def _store(
        self, key: str, output: Path, command: list[str], credentials: Mapping[str, str]
    ) -> None:
        """Copy ``output`` into a new entry; atomic by rename, the first writer wins."""
        root = private_dir(self.path, 0o700)
        staging = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=root))
        try:
            _copy(output, staging / "data")
            write_json(
                staging / META,
                {"command": command, "credentials": dict(credentials), "pid": os.getpid()},
            )
            final = root / key
            if final.exists():
                old = self.entry(key).meta()
                if old is not None and old.get("command") == command:
                    return  # another process stored the same thing first
                # Made by another command (an upgrade): move it aside, then replace it.
                aside = Path(tempfile.mkdtemp(prefix=f".{key}-old-", dir=root))
                os.rename(final, aside / "entry")
                shutil.rmtree(aside, ignore_errors=True)
            os.rename(staging, final)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def clear(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def _copy(source: Path, target: Path) -> None:
    """Copy a directory tree keeping owners and modes (servers check both)."""
    subprocess.run(["cp", "-a", str(source), str(target)], check=True, capture_output=True)
