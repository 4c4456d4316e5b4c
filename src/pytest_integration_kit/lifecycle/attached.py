"""Servers reached through a record rather than started here.

Another process (an xdist worker, an earlier run) started them; this one uses, stops
or reaps them from their handle: a container id, or a process id and its directory.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import time
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_integration_kit.backends.base import RunningServer, ServerStopError, mask
from pytest_integration_kit.backends.docker import (
    DockerServer,
    preload_docker_modules,
    remove_container,
)
from pytest_integration_kit.backends.local import LocalServer, remove_workdir
from pytest_integration_kit.backends.url import UrlServer
from pytest_integration_kit.lifecycle.engine import ABSENT, inspected
from pytest_integration_kit.lifecycle.owner import pid_alive
from pytest_integration_kit.services import REGISTRY

if TYPE_CHECKING:
    from pytest_integration_kit.lifecycle.records import ServerRecord
    from pytest_integration_kit.services.endpoint import Endpoint

__all__ = [
    "AttachedContainer",
    "AttachedProcess",
    "attach",
    "docker_client",
    "handle_of",
    "stop_process_tree",
]

#: Seconds a server may take to shut down after its stop signal before it is killed.
STOP_GRACE = 15.0


@functools.lru_cache(maxsize=1)
def docker_client() -> Any:
    """One docker client per process, created on first use (raises when no engine).

    docker-py is imported under the preload's lock: whichever thread first needs it
    (a server's start, the reaper) imports it whole while the others wait.
    """
    preload_docker_modules()
    import docker  # noqa: PLC0415 - the docker extra is optional

    return docker.from_env(timeout=10)


def handle_of(server: RunningServer) -> dict[str, Any]:
    """How another process reaches ``server`` again."""
    if isinstance(server, (AttachedContainer, AttachedProcess)):
        return dict(server.handle)
    if isinstance(server, DockerServer):
        return {"container_id": server.container_id}
    if isinstance(server, LocalServer):
        return {
            "pid": server.process.pid,
            "workdir": str(server.workdir),
            "log": str(server.log),
        }
    return {}


def attach(record: ServerRecord) -> RunningServer:
    """A :class:`RunningServer` for the server ``record`` describes."""
    endpoint = record.endpoint_object()
    if record.backend == "docker":
        return AttachedContainer(endpoint, record.handle, record.seconds_to_ready)
    if record.backend == "local":
        return AttachedProcess(endpoint, record.handle, record.seconds_to_ready)
    return UrlServer(endpoint, record.seconds_to_ready)


class AttachedContainer(RunningServer):
    """A container started elsewhere, by id."""

    def __init__(self, endpoint: Endpoint, handle: dict[str, Any], seconds_to_ready: float) -> None:
        self.endpoint = endpoint
        self.handle = handle
        self.seconds_to_ready = seconds_to_ready
        self.container_id = str(handle["container_id"])

    def _container(self) -> Any:
        return docker_client().containers.get(self.container_id)

    def is_alive(self) -> bool:
        # Asked on the engine's socket first: a warm start then never imports docker-py.
        attrs = inspected("containers", self.container_id)
        if attrs is ABSENT:
            return False
        if attrs is not None:
            state = attrs.get("State")
            return (state.get("Status") if isinstance(state, dict) else state) == "running"
        try:
            return bool(self._container().status == "running")
        except Exception:
            return False

    def image_id(self) -> str:
        """The id of the image the container runs ('' when unknown)."""
        try:
            return str(self._container().attrs.get("Image", ""))
        except Exception:
            return ""

    def stop(self) -> None:
        import docker.errors  # noqa: PLC0415 - the docker extra is optional

        try:
            container = self._container()
        except docker.errors.NotFound:
            return  # already gone is fine
        except Exception as exc:
            raise ServerStopError(
                f"container {self.container_id[:12]} could not be removed: {exc}"
            ) from None
        remove_container(container, self.container_id)

    def log_tail(self, lines: int = 40) -> str:
        try:
            raw = self._container().logs(tail=lines)
        except Exception as exc:
            return f"(no container log: {exc})"
        return mask(raw.decode(errors="replace"), self.endpoint.password) or "(empty log)"


class AttachedProcess(RunningServer):
    """A local server process started elsewhere, by pid and work directory."""

    def __init__(self, endpoint: Endpoint, handle: dict[str, Any], seconds_to_ready: float) -> None:
        self.endpoint = endpoint
        self.handle = handle
        self.seconds_to_ready = seconds_to_ready
        self.pid = int(handle["pid"])
        self.workdir = Path(handle["workdir"])
        self.log = Path(handle["log"])

    def is_alive(self) -> bool:
        # The pid must still be the server: it works in the server's directory. Only
        # that process is asked (listing every process's cwd and command line costs a
        # warm start milliseconds per hundred processes on the machine).
        return works_in(self.pid, self.workdir)

    def stop(self) -> None:
        # A kept server's service may not be registered in this run: SIGTERM then.
        spec = REGISTRY.get(self.endpoint.service)
        stop_signal = spec.stop_signal if spec is not None else signal.SIGTERM
        stop_process_tree(self.workdir, stop_signal, self.pid)
        remove_workdir(self.workdir)

    def log_tail(self, lines: int = 40) -> str:
        try:
            with open(self.log, errors="replace") as handle:
                text = "".join(deque(handle, maxlen=lines))
        except OSError:
            return "(no server log)"
        return mask(text, self.endpoint.password) or "(the server log is empty)"


def processes_under(directory: Path) -> list[int]:
    """Pids of the processes working in ``directory`` (cwd or command line).

    Servers run with their work directory as cwd (PostgreSQL and MariaDB move into
    their data directory beneath it), so this finds a server and all its children
    without trusting a pid file. Processes whose facts are hidden from us are skipped.
    """
    prefix = _prefix(directory)
    import psutil  # noqa: PLC0415 - see owner.process_start

    found = [
        process.pid
        for process in psutil.process_iter(["cwd", "cmdline"])
        if process.pid != os.getpid() and _works_under(process.info, prefix)
    ]
    return [pid for pid in found if pid_alive(pid)]


def works_in(pid: int, directory: Path) -> bool:
    """Whether ``pid`` is one of :func:`processes_under` ``directory`` (asking that
    process only)."""
    if pid == os.getpid():
        return False
    import psutil  # noqa: PLC0415 - see owner.process_start

    try:
        # Facts hidden from us read as None, as in processes_under.
        info = psutil.Process(pid).as_dict(["cwd", "cmdline"])
    except psutil.Error:
        return False
    return _works_under(info, _prefix(directory)) and pid_alive(pid)


def _prefix(directory: Path) -> str:
    return str(directory.resolve()) if directory.exists() else str(directory)


def _works_under(info: dict[str, Any], prefix: str) -> bool:
    """A process's cwd is ``prefix`` or beneath it, or an argument names a path there."""
    cwd = info.get("cwd") or ""
    if cwd == prefix or cwd.startswith(prefix + "/"):
        return True
    arguments = info.get("cmdline") or []
    return any(prefix + "/" in arg or arg.endswith(prefix) for arg in arguments)


def stop_process_tree(
    directory: Path, sig: int = signal.SIGTERM, leader: int | None = None, grace: float = STOP_GRACE
) -> None:
    """Stop the server working in ``directory``: ``sig`` to its leader, then SIGKILL."""
    pids = processes_under(directory)
    if leader is not None and pid_alive(leader) and leader not in pids and not pids:
        # Its directory is gone or hidden from us: we only know the pid we were given.
        pids = [leader]
    if not pids:
        return
    targets = [leader] if leader in pids else pids
    for pid in targets:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not any(pid_alive(pid) for pid in pids):
            return
        time.sleep(0.02)
    for pid in processes_under(directory) or pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(pid_alive(pid) for pid in pids):
        time.sleep(0.02)
