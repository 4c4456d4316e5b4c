"""A local server's directories: its work directory (anywhere, maybe a long TMPDIR)
and its socket directory (a short path), how they are linked and removed."""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
import time
from pathlib import Path

__all__ = [
    "SOCKETS_LINK",
    "SOCKETS_PREFIX",
    "WORKDIR_PREFIX",
    "orphaned_socket_dirs",
    "remove_workdir",
    "socket_dir",
    "workdir_base",
    "workdir_bases",
]

#: Every local server's directory starts with this, then the session id.
WORKDIR_PREFIX = "pytest-integration-kit-"
#: A server's socket directory (in a short temp dir) starts with this, then the session id.
SOCKETS_PREFIX = "pik-"
#: In a server's directory: the link to its socket directory.
SOCKETS_LINK = "sockets"
#: In a socket directory: the link back to its server's directory.
SERVER_LINK = "server"
#: A socket directory still without its ``server`` link this many seconds after it was
#: made lost its maker between ``mkdtemp`` and the link (a ``kill -9``).
UNLINKED_AFTER = 10.0
#: A Unix socket's path must fit in sun_path: 108 bytes with the final NUL.
SUN_PATH_MAX = 107
#: The longest socket file name a service puts there (".s.PGSQL.65535.lock").
SOCKET_NAME_MAX = 20


def _reachable(path: str, uid: int, gid: int) -> bool:
    """Can the user ``uid``/``gid`` enter ``path`` (every directory on the way)?

    By mode bits: a root-run session hands servers to ``postgres`` or ``nobody``, who
    cannot enter a private (0700) TMPDIR of root's.
    """
    current = Path(path).resolve()
    for directory in (current, *current.parents):
        try:
            info = os.stat(directory)
        except OSError:
            return False
        if info.st_uid == uid:
            allowed = info.st_mode & stat.S_IXUSR
        elif info.st_gid == gid:
            allowed = info.st_mode & stat.S_IXGRP
        else:
            allowed = info.st_mode & stat.S_IXOTH
        if not allowed:
            return False
    return True


def workdir_base(user: tuple[int, int] | None = None) -> str:
    """Where a new server directory goes: the temp dir, or ``/tmp`` when the server's
    user (``user``: uid, gid; None when it is ours) cannot enter the temp dir."""
    base = tempfile.gettempdir()
    if user is not None and not _reachable(base, *user) and _reachable("/tmp", *user):  # noqa: S108
        return "/tmp"  # noqa: S108 - mkdtemp in it: a new private directory
    return base


def workdir_bases() -> list[Path]:
    """Every place :func:`workdir_base` may have put a server directory."""
    return [Path(p) for p in dict.fromkeys([tempfile.gettempdir(), "/tmp"])]  # noqa: S108


def socket_dir(workdir: Path, tag: str, user: tuple[int, int] | None = None) -> Path:
    """A new private directory with a short path for the server's Unix sockets.

    A socket's path must fit in 107 bytes, and TMPDIR can be long (macOS, CI runners,
    pytester): the temp dir when it is short enough, else ``/tmp``. Its parent is ours
    (mkdtemp, 0711) and linked from ``workdir`` (so whoever removes the server removes
    it); the ``s`` inside it is the server's.
    """
    name = f"{SOCKETS_PREFIX}{tag[:12]}-"
    base = workdir_base(user)
    room = SUN_PATH_MAX - len(name) - len("XXXXXXXX/s/") - SOCKET_NAME_MAX
    if len(base) + 1 > room and os.path.isdir("/tmp"):  # noqa: S108 - short, mkdtemp in it
        base = "/tmp"  # noqa: S108
    parent = Path(tempfile.mkdtemp(prefix=name, dir=base))
    try:
        # Just made by mkdtemp (0700): let the server's user enter it, through the fd.
        fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        try:
            os.fchmod(fd, 0o711)  # enter only: no listing, no writing
        finally:
            os.close(fd)
        os.symlink(workdir, parent / SERVER_LINK)
        os.symlink(parent, workdir / SOCKETS_LINK)
        sockets = parent / "s"
        sockets.mkdir(mode=0o700)
    except BaseException:
        shutil.rmtree(parent, ignore_errors=True)
        raise
    return sockets


def orphaned_socket_dirs() -> list[Path]:
    """This user's socket directories whose server directory is gone: garbage.

    Each links back to its server's directory (``server``). One without the link is
    being made (the link follows ``mkdtemp`` at once) unless it is older than
    :data:`UNLINKED_AFTER`: then its maker was killed in between.
    """
    found = []
    for base in workdir_bases():
        for path in Path(base).glob(f"{SOCKETS_PREFIX}*"):
            with contextlib.suppress(OSError):
                info = os.lstat(path)
                if not (stat.S_ISDIR(info.st_mode) and info.st_uid == os.geteuid()):
                    continue
                try:
                    server = os.readlink(path / SERVER_LINK)
                except FileNotFoundError:
                    if _unlinked_leftover(path, info):
                        found.append(path)
                    continue
                if not os.path.lexists(server):
                    found.append(path)
    return sorted(found)


def _unlinked_leftover(path: Path, info: os.stat_result) -> bool:
    """Whether ``path`` is a socket directory whose maker died before linking it: named
    as :func:`socket_dir` names them, still empty and private, and made more than
    :data:`UNLINKED_AFTER` seconds ago. Nothing else of that name is touched."""
    suffix = path.name.rsplit("-", 1)[-1]
    if len(suffix) != 8 or info.st_mode & 0o777 not in (0o700, 0o711):  # mkdtemp's, fchmod's
        return False
    if time.time() - info.st_mtime <= UNLINKED_AFTER:
        return False
    with os.scandir(path) as entries:
        return next(entries, None) is None


def remove_workdir(workdir: Path) -> None:
    """Remove a local server's directory and its socket directory (once it has stopped).

    The link (in a directory the server's user owns) is followed only to a directory
    named like ours, of this user, that links back to ``workdir``.
    """
    try:
        target = Path(os.readlink(workdir / SOCKETS_LINK))
    except OSError:
        target = None
    if target is not None and target.name.startswith(SOCKETS_PREFIX):
        with contextlib.suppress(OSError):
            info = os.lstat(target)
            mine = stat.S_ISDIR(info.st_mode) and info.st_uid == os.geteuid()
            if mine and os.readlink(target / SERVER_LINK) == str(workdir):
                shutil.rmtree(target, ignore_errors=True)
    shutil.rmtree(workdir, ignore_errors=True)
