"""Set-up commands and files of a local server, run and written as the server's user.

PostgreSQL refuses to run as root: when pytest runs as root, a local server, its
``initdb`` and the files it reads belong to the service's own user (``postgres``…) or
``nobody`` (:class:`RunAs`). A service's ``prepare_local`` gets a :class:`LocalRunner`.
"""

from __future__ import annotations

import os
import pwd
import subprocess
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pytest_integration_kit.backends.workdirs import SOCKETS_LINK
from pytest_integration_kit.errors import BackendUnavailable, ServerStartError

if TYPE_CHECKING:
    from pathlib import Path

    from pytest_integration_kit.lifecycle.warm import WarmStart
    from pytest_integration_kit.services.spec import ServiceSpec

__all__ = ["LocalRunner", "RunAs"]


@dataclass(frozen=True)
class RunAs:
    """The unprivileged user servers run as when pytest runs as root."""

    name: str
    uid: int
    gid: int

    @classmethod
    def for_spec(cls, spec: ServiceSpec) -> RunAs | None:
        """None when not root; else the spec's user (``postgres``…) or ``nobody``."""
        if os.geteuid() != 0:
            return None
        for name in (spec.os_user, "nobody"):
            try:
                entry = pwd.getpwnam(name)
            except KeyError:
                continue
            return cls(name, entry.pw_uid, entry.pw_gid)
        raise BackendUnavailable(
            f"running as root, and neither the user {spec.os_user!r} nor 'nobody' exists to "
            f"run {spec.title} as (it refuses root or should not have it); create one"
        )


class LocalRunner:
    """Runs set-up commands and writes files as the server's user."""

    def __init__(
        self,
        run_as: RunAs | None,
        workdir: Path,
        env: dict[str, str],
        warm: WarmStart | None = None,
        sockets: Path | None = None,
    ) -> None:
        self.run_as = run_as
        self.workdir = workdir
        self.env = env
        self.warm = warm
        #: Where the server puts its Unix sockets: a short path, whatever TMPDIR is.
        self.sockets = sockets if sockets is not None else workdir / SOCKETS_LINK
        #: A free port on 127.0.0.1 for each of the spec's ``extra_ports``, by name.
        self.ports: dict[str, int] = {}

    @property
    def uid(self) -> int | None:
        return None if self.run_as is None else self.run_as.uid

    @property
    def gid(self) -> int | None:
        return None if self.run_as is None else self.run_as.gid

    @property
    def extra_groups(self) -> list[int] | None:
        # Dropping to another user also drops root's supplementary groups.
        return None if self.run_as is None else []

    def run(self, command: list[str], *, what: str, timeout: float = 300) -> None:
        try:
            result = subprocess.run(  # noqa: PLW1510 - the return code is checked below
                command,
                cwd=self.workdir,
                env=self.env,
                capture_output=True,
                text=True,
                timeout=timeout,
                user=self.uid,
                group=self.gid,
                extra_groups=self.extra_groups,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            raise ServerStartError(f"{what} could not run: {exc}") from None
        if result.returncode != 0:
            output = "\n".join((result.stdout + result.stderr).splitlines()[-30:])
            raise ServerStartError(f"{what} failed with exit code {result.returncode}:\n{output}")

    def initialise(self, command: list[str], *, output: Path, what: str) -> None:
        """Run an init command (initdb…) whose product is the directory ``output``; a
        warm start copies the product of an earlier identical run instead."""
        if self.warm is None:
            self.run(command, what=what)
        else:
            self.warm.initialise(
                command,
                workdir=self.workdir,
                output=output,
                run=lambda: self.run(command, what=what),
            )

    def own(self, path: Path) -> None:
        """Give ``path`` (one we just made) to the server's user; never through a link."""
        if self.run_as is not None:
            os.chown(path, self.run_as.uid, self.run_as.gid, follow_symlinks=False)

    def write_secret(self, path: Path, text: str) -> None:
        """Write a file only the server's user can read."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        self.own(path)
