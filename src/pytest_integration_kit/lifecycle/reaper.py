"""Reaping without Ryuk: remove what dead sessions left, never a live or kept server.

A session's containers carry its id and owner (pid, host, start time) in labels; its
local servers work in temp directories named after the session, whose owner is in the
run directory. At start-up, everything whose owner is known *and* dead is removed;
anything else (a live session, another host's, a kept server, an unknown owner) is
left alone. There is no host-wide sweep.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import shutil
import signal
import stat
import time
from typing import TYPE_CHECKING

from pytest_integration_kit.backends.labels import LABEL_PREFIX, REUSE_LABEL, SESSION_LABEL
from pytest_integration_kit.backends.workdirs import (
    WORKDIR_PREFIX,
    orphaned_socket_dirs,
    remove_workdir,
    workdir_bases,
)
from pytest_integration_kit.lifecycle.engine import labelled_containers, labelled_networks
from pytest_integration_kit.lifecycle.owner import Owner
from pytest_integration_kit.lifecycle.run import RunDirectory

# The backends and docker-py are imported where something is to be removed: most
# passes (every run makes one, in a thread) find nothing.
if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["ReapReport", "Reaper"]

log = logging.getLogger(__name__)

#: Seconds a dead session's server gets to shut down before it is killed.
REAP_GRACE = 5.0
#: Seconds after which a run dir that names no owner is removed.
ABANDONED_AFTER = 86400.0


class ReapReport:
    """What one pass removed.

    A plain class, not a dataclass: every run's reaper pass imports this module, and a
    dataclass compiles its methods at import (issue #11).
    """

    __slots__ = ("containers", "errors", "processes", "runs", "workdirs")

    def __init__(
        self,
        containers: list[str] | None = None,
        workdirs: list[str] | None = None,
        runs: list[str] | None = None,
        processes: list[int] | None = None,
        errors: list[str] | None = None,
    ) -> None:
        self.containers: list[str] = [] if containers is None else containers
        self.workdirs: list[str] = [] if workdirs is None else workdirs
        self.runs: list[str] = [] if runs is None else runs
        #: Orphaned processes of dead runs (xdist workers whose controller died).
        self.processes: list[int] = [] if processes is None else processes
        self.errors: list[str] = [] if errors is None else errors

    def _values(self) -> tuple[list[str], list[str], list[str], list[int], list[str]]:
        return (self.containers, self.workdirs, self.runs, self.processes, self.errors)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ReapReport):
            return NotImplemented
        return self._values() == other._values()

    __hash__ = None  # type: ignore[assignment]  # mutable, as the dataclass was

    def __repr__(self) -> str:
        return (
            f"ReapReport(containers={self.containers!r}, workdirs={self.workdirs!r}, "
            f"runs={self.runs!r}, processes={self.processes!r}, errors={self.errors!r})"
        )

    def __bool__(self) -> bool:
        return bool(self.containers or self.workdirs or self.runs or self.processes)

    def describe(self) -> str:
        text = (
            f"{len(self.containers)} container(s), {len(self.workdirs)} local server dir(s), "
            f"{len(self.runs)} run dir(s)"
        )
        if self.processes:
            text += f", {len(self.processes)} orphaned worker(s)"
        return text


def _none_labelled(label: str) -> bool:
    """The engine's socket lists no container and no network with ``label`` (False
    when it cannot tell: docker-py is asked then)."""
    return labelled_containers(label) == [] and labelled_networks(label) == []


class Reaper:
    """Finds and removes the leftovers of dead sessions (or of one finished session)."""

    def __init__(
        self,
        *,
        runs_root: Path | None = None,
        temp_dir: Path | None = None,
        docker: bool = True,
    ) -> None:
        self.runs_root = runs_root
        #: Where local server directories are looked for (all their possible places).
        self.temp_dirs = [temp_dir] if temp_dir is not None else workdir_bases()
        self.docker = docker

    # -- what is dead -----------------------------------------------------------------

    def dead_sessions(self) -> set[str]:
        """Sessions whose run directory names an owner that is gone."""
        dead = set()
        for run in RunDirectory.all(self.runs_root):
            owner = run.owner()
            if owner is not None and not owner.is_alive():
                dead.add(run.session_id)
        return dead

    # -- passes -----------------------------------------------------------------------

    def reap_dead(self) -> ReapReport:
        """Remove the containers, local servers and run dirs of every dead session."""
        report = ReapReport()
        dead = self.dead_sessions()
        for run in RunDirectory.all(self.runs_root):
            if run.session_id in dead:
                # First the orphans, so that none of them uses a server being removed.
                for process in run.processes():
                    if process.is_alive():
                        with contextlib.suppress(ProcessLookupError, PermissionError):
                            os.kill(process.pid, signal.SIGKILL)
                        report.processes.append(process.pid)
        self._reap_containers(report, session=None)
        self._reap_workdirs(report, sessions=dead)
        for run in RunDirectory.all(self.runs_root):
            if run.session_id in dead or _abandoned(run):
                run.remove()
                report.runs.append(run.session_id)
        return report

    def reap_session(self, session_id: str) -> ReapReport:
        """Remove what is left of one session (not its kept servers): run at its end."""
        report = ReapReport()
        self._reap_containers(report, session=session_id)
        self._reap_workdirs(report, sessions={session_id})
        return report

    # -- containers -------------------------------------------------------------------

    def _reap_containers(self, report: ReapReport, *, session: str | None) -> None:
        if not self.docker:
            return
        label = f"{SESSION_LABEL}={session}" if session is not None else SESSION_LABEL
        if session is None and not self._dead_containers_listed(label):
            return  # nothing to remove: docker-py not even imported
        if session is not None and _none_labelled(label):
            return  # the session made none (it attached a kept container): the same
        from pytest_integration_kit.backends.docker import preload_docker_modules  # noqa: PLC0415
        from pytest_integration_kit.lifecycle.attached import docker_client  # noqa: PLC0415

        preload_docker_modules()  # in this thread, under the lock servers' threads use
        try:
            containers = docker_client().containers.list(all=True, filters={"label": label})
        except Exception as exc:
            if session is not None:  # at the end of a session that used the engine
                report.errors.append(
                    "the Docker engine could not be asked for this session's containers: "
                    + " ".join(str(exc).split())
                )
            # At start-up: no engine here, so nothing of ours can be there.
            log.debug("reaper: docker not reachable: %s", exc)
            return
        for container in containers:
            labels = dict(container.labels or {})
            if REUSE_LABEL in labels:
                continue
            if session is None:
                owner = Owner.from_labels(labels)
                if owner is None or owner.is_alive():
                    continue
            try:
                container.remove(force=True, v=True)
            except Exception as exc:
                report.errors.append(f"container {container.short_id}: {exc}")
                continue
            report.containers.append(str(container.id))
        self._reap_networks(report, label=label, session=session)

    @staticmethod
    def _reap_networks(report: ReapReport, *, label: str, session: str | None) -> None:
        """The networks a Compose environment of the session made (once its containers
        are gone)."""
        from pytest_integration_kit.lifecycle.attached import docker_client  # noqa: PLC0415

        try:
            networks = docker_client().networks.list(filters={"label": label})
        except Exception:
            return
        for network in networks:
            labels = dict(network.attrs.get("Labels") or {})
            if session is None:
                owner = Owner.from_labels(labels)
                if owner is None or owner.is_alive():
                    continue
            for attempt in range(20):
                try:
                    network.remove()
                    break
                except Exception as exc:
                    # Its containers were just removed: the engine may still list them.
                    if "active endpoints" in str(exc) and attempt < 19:
                        time.sleep(0.25)
                        continue
                    report.errors.append(f"network {network.name}: {exc}")
                    break

    @staticmethod
    def _dead_containers_listed(label: str) -> bool:
        """Whether the engine lists a container of a dead session (True when unsure)."""
        listed = labelled_containers(label)
        if listed is None:  # not a local unix socket: let docker-py look
            return True
        for container in listed:
            labels = container["labels"]
            if REUSE_LABEL in labels:
                continue
            owner = Owner.from_labels(labels)
            if owner is not None and not owner.is_alive():
                return True
        return False

    # -- local servers ----------------------------------------------------------------

    def workdirs(self, sessions: set[str]) -> list[Path]:
        """Local server directories of ``sessions`` in the temp dir.

        Real directories only: anyone can plant a symlink with such a name in a shared
        temp dir (to ``/``, whose processes the reaper would then stop).
        """
        found = []
        for session, base in itertools.product(sessions, self.temp_dirs):
            for path in base.glob(f"{WORKDIR_PREFIX}{session}-*"):
                with contextlib.suppress(OSError):
                    if stat.S_ISDIR(os.lstat(path).st_mode):
                        found.append(path)
        return sorted(found)

    def _reap_workdirs(self, report: ReapReport, *, sessions: set[str]) -> None:
        for workdir in self.workdirs(sessions):
            from pytest_integration_kit.lifecycle.attached import (  # noqa: PLC0415
                stop_process_tree,
            )

            try:
                stop_process_tree(workdir, grace=REAP_GRACE)
            except Exception as exc:
                report.errors.append(f"{workdir}: {exc}")
            remove_workdir(workdir)
            report.workdirs.append(str(workdir))
        # Socket dirs whose server dir is gone (removed by a version that did not know
        # them, or by a crash before it removed them).
        for directory in orphaned_socket_dirs():
            shutil.rmtree(directory, ignore_errors=True)


def _abandoned(run: RunDirectory) -> bool:
    """A run dir without an owner (its creator died while writing it) a day old."""
    try:
        age = time.time() - run.path.stat().st_mtime
    except OSError:
        return False
    return run.owner() is None and age > ABANDONED_AFTER


def kept_containers() -> list[dict[str, str]]:
    """Containers labelled for reuse by this host (a shared engine may hold other hosts'):
    id, service, config hash, status."""
    from pytest_integration_kit.lifecycle.attached import docker_client  # noqa: PLC0415

    try:
        containers = docker_client().containers.list(all=True, filters={"label": REUSE_LABEL})
    except Exception:
        return []
    containers = [
        c
        for c in containers
        if (owner := Owner.from_labels(dict(c.labels or {}))) is None or owner.on_this_host
    ]
    return [
        {
            "id": str(c.id),
            "service": str((c.labels or {}).get(f"{LABEL_PREFIX}.service", "?")),
            "config_hash": str((c.labels or {}).get(REUSE_LABEL, "")),
            "status": str(c.status),
        }
        for c in containers
    ]


def remove_container(container_id: str) -> None:
    """Remove a kept container; the last of a kept Compose project takes its network too."""
    from pytest_integration_kit.lifecycle.attached import docker_client  # noqa: PLC0415

    client = docker_client()
    container = client.containers.get(container_id)
    project = (container.labels or {}).get("com.docker.compose.project")
    container.remove(force=True, v=True)
    if not project:
        return
    label = f"com.docker.compose.project={project}"
    if client.containers.list(all=True, filters={"label": label}):
        return
    for network in client.networks.list(filters={"label": label}):
        with contextlib.suppress(Exception):  # in use by something else: left alone
            network.remove()
