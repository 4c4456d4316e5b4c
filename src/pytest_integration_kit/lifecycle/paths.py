"""Directories the kit makes in places other users can write to (the temp dir).

A fixed name in a shared directory can be planted by anyone: a symlink to ``/usr``, or
a world-writable directory of another user. So a directory is created atomically with
its final mode, opened without following links and checked through the open descriptor;
one that exists already is used only when it is a real directory of this user that no
one else can write to. Nothing is ever chmod-ed or chown-ed through a path that might
be a link, and nothing that exists is chmod-ed at all.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Any

__all__ = [
    "UnsafeDirectory",
    "is_private_dir",
    "private_dir",
    "private_temp_dir",
    "read_json",
    "write_json",
]

#: Open a directory without following a symlink in its last component.
_OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_NOFOLLOW", 0)


class UnsafeDirectory(PermissionError):
    """A directory the kit would use is a link, someone else's, or writable by others."""


def _euid() -> int:
    return os.geteuid() if hasattr(os, "geteuid") else 0


def private_dir(path: Path, mode: int = 0o700, *, create: bool = True) -> Path:
    """Create ``path`` for this user only, or check that the one there is safe to use.

    Parents are created (with ``mode``) when missing. A new directory gets ``mode``
    through its descriptor; an existing one must be a directory (not a link) owned by
    this user and not writable by group or others, else :class:`UnsafeDirectory`.
    With ``create`` False a missing directory raises FileNotFoundError.
    """
    created = False
    if create:
        try:
            os.mkdir(path, mode)
            created = True
        except FileNotFoundError:
            private_dir(path.parent, mode)
            return private_dir(path, mode)
        except FileExistsError:
            pass
    try:
        fd = os.open(path, _OPEN_DIR)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise UnsafeDirectory(
            f"{path} is not a directory of its own (a symlink or a file?): {exc.strerror}; "
            "refusing to use it"
        ) from None
    try:
        info = os.fstat(fd)
        if info.st_uid != _euid():
            raise UnsafeDirectory(
                f"{path} belongs to uid {info.st_uid}, not to this user (uid {_euid()}); "
                "refusing to use it"
            )
        if created:
            # Ours, just made: give it the mode the umask took away, through the fd.
            os.fchmod(fd, mode)
        elif stat.S_IMODE(info.st_mode) & 0o022:
            raise UnsafeDirectory(
                f"{path} is writable by other users (mode {stat.S_IMODE(info.st_mode):o}); "
                "refusing to use it"
            )
    finally:
        os.close(fd)
    return path


def is_private_dir(path: Path) -> bool:
    """``path`` exists and :func:`private_dir` would use it as it is."""
    try:
        private_dir(path, create=False)
    except OSError:
        return False
    return True


def private_temp_dir(prefix: str, parent: Path | None = None) -> Path:
    """A new directory with a random name (mkdtemp: created atomically, mode 0700)."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir=parent))


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write atomically (rename) and privately (0600): records hold passwords."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()  # left by a crash of a process that had this pid
    # O_EXCL: a new file, never one (or a link) that is already there.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle, indent=1, sort_keys=True)
    os.replace(tmp, path)


def read_json(path: Path) -> dict[str, Any] | None:
    """The document at ``path``, or None when it is absent or unreadable."""
    with contextlib.suppress(OSError, ValueError):
        data = json.loads(path.read_text())
        if isinstance(data, dict):
            return data
    return None
