"""A server set's kept servers (``integration_reuse``): attach the one a slot keeps, or
start one and keep it.

A *slot* is the project and the request (:meth:`KeptSlots.slot`). Its kept server is
attached when the hash of the configuration it was started with (:func:`config_hash`)
matches and it still answers; otherwise it is removed and replaced. The records live
in :class:`~pytest_integration_kit.lifecycle.kept.KeptServers`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import socket
import time
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

from pytest_integration_kit.backends.docker import preload_docker_modules
from pytest_integration_kit.lifecycle.attached import (
    AttachedContainer,
    AttachedProcess,
    attach,
    docker_client,
    handle_of,
)
from pytest_integration_kit.lifecycle.engine import ABSENT, inspected
from pytest_integration_kit.lifecycle.kept import REUSE_LABEL
from pytest_integration_kit.lifecycle.records import ServerRecord, digest, endpoint_fields
from pytest_integration_kit.lifecycle.run import LOCK_MARGIN

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Mapping

    from pytest_integration_kit.backends.base import Backend, RunningServer, ServerOptions
    from pytest_integration_kit.lifecycle.kept import KeptServers
    from pytest_integration_kit.lifecycle.requests import ServerRequest
    from pytest_integration_kit.settings import Settings

__all__ = ["KeptSlots", "config_hash", "docker_modules"]


class KeptSlots:
    """The kept servers a set may attach, or start and keep: one per slot.

    ``progress`` is told ``(service, "attach", text)`` when a matching kept server is
    attached (the set passes it on to whoever prints progress).
    """

    def __init__(
        self,
        kept: KeptServers,
        *,
        settings: Settings,
        backends: Mapping[str, Backend],
        project: str,
        worker_id: str,
        progress: Callable[[str, str, str], None],
    ) -> None:
        self.kept = kept
        self.settings = settings
        self.backends = backends
        self.project = project
        self.worker_id = worker_id
        self._progress = progress

    def slot(self, request: ServerRequest) -> str:
        return "slot-" + digest(self.project, request.key)

    def may_use_docker(self, request: ServerRequest, choice: str) -> bool:
        """Whether starting ``request`` on ``choice`` (``auto`` or ``docker``) may need
        docker-py: not to attach a kept local server, nor a kept container the engine's
        socket says runs (the attach asks the socket too). If the attach fails after
        all, the start imports docker-py in its thread, under the preload's lock
        (:func:`docker_modules`)."""
        old = self.kept.read(self.slot(request))
        if old is None:
            return True
        if old.backend == "local":
            return choice == "docker"
        if old.backend != "docker" or "container_id" not in old.handle:
            return True
        return not _container_runs(str(old.handle["container_id"]))

    def attach_kept(
        self, request: ServerRequest, options: ServerOptions, *, among: Collection[str]
    ) -> tuple[Backend, RunningServer, str] | None:
        """The slot's kept server, if one of the backends ``among`` started it, it
        matches and it answers: ``(backend, server, config hash)``.

        For ``auto``, before any backend is probed: it would otherwise ask Docker first
        (and try to pull a missing image) on every warm start, only to pick the same
        kept server. Anything else (none kept, mismatched, dead) is None: the usual way.
        """
        slot = self.slot(request)
        with self.kept.lock(slot, options.startup_timeout + LOCK_MARGIN):
            old = self.kept.read(slot)
            backend = self.backends.get(old.backend) if old is not None else None
            if old is None or old.endpoint is None or backend is None:
                return None
            if backend.name not in among:
                return None
            try:
                config = config_hash(self.settings, request, options, backend)
            except Exception:  # e.g. the binaries are gone: the usual way then
                return None
            server = attach(old)
            matches = old.config_hash == config
            if matches:
                self._attaching(request, backend)
            return (backend, server, config) if matches and _answers(server) else None

    def attach_or_keep(
        self, request: ServerRequest, options: ServerOptions, backend: Backend
    ) -> tuple[RunningServer, bool, str]:
        """Attach the kept server of this slot if its configuration matches and it
        answers; otherwise remove it and keep a new one. Returns (server, reused,
        config hash)."""
        slot = self.slot(request)
        config = config_hash(self.settings, request, options, backend)
        with self.kept.lock(slot, options.startup_timeout + LOCK_MARGIN):
            old = self.kept.read(slot)
            if old is not None and old.endpoint is not None:
                server = attach(old)
                if old.config_hash == config:
                    self._attaching(request, backend)
                if old.config_hash == config and _answers(server):
                    return server, True, config
                docker_modules(server)
                server.stop()  # dead or mismatched: replaced
            self.kept.forget(slot)
            keep = dataclasses.replace(
                options,
                labels={**options.labels, REUSE_LABEL: config},
                workdir_root=self.kept.servers_dir,
            )
            docker_modules(backend)
            started = backend.start(keep)
            self.kept.write(
                ServerRecord(
                    key=slot,
                    service=request.service,
                    backend=backend.name,
                    endpoint=endpoint_fields(started.endpoint),
                    handle=handle_of(started),
                    seconds_to_ready=started.seconds_to_ready,
                    kept=True,
                    started_by=self.worker_id,
                    started_at=time.time(),
                    config_hash=config,
                )
            )
            return started, False, config

    def _attaching(self, request: ServerRequest, backend: Backend) -> None:
        # Nothing to announce: the first test need not wait for the probe before it
        # starts (importing its drivers meanwhile); a kept server that does not answer
        # is replaced and its start announced then.
        self._progress(request.service, "attach", f"{request.service} kept on {backend.name}")


def config_hash(
    settings: Settings, request: ServerRequest, options: ServerOptions, backend: Backend
) -> str:
    """What a kept server must match to be reused: image or binaries, settings, schema."""
    identity: list[object] = [
        _package_version(),
        type(options.spec).__module__,
        type(options.spec).__qualname__,
        backend.name,
        request.port,
        str(settings["schema"]),
        digest(options.password) if options.password is not None else "random password",
        *options.spec.identity(),
    ]
    if backend.name == "docker":
        identity.append(options.image)
        # What the name means now, asked on the engine's socket (no docker-py import).
        image = inspected("images", options.image)
        if isinstance(image, dict) and isinstance(image.get("Id"), str):
            identity.append(image["Id"])
        elif image is not ABSENT:  # unsure: as docker-py has it (the reference alone
            with contextlib.suppress(Exception):  # when it cannot tell either)
                identity.append(docker_client().images.get(options.image).id)
    elif backend.name == "local":
        for name, path in sorted(options.spec.find_binaries(options.bin_dir).items()):
            stat = path.stat()
            identity += [name, str(path), stat.st_mtime_ns, stat.st_size]
    return digest(*identity)


def docker_modules(backend: Backend | RunningServer) -> None:
    """Import docker-py under the preload's lock before a docker start or stop in a
    server's thread: the main thread no longer preloads it for a kept container that
    runs (:meth:`KeptSlots.may_use_docker`), in case its attach fails after all."""
    if isinstance(backend, AttachedContainer) or getattr(backend, "name", "") == "docker":
        preload_docker_modules()


def _answers(server: RunningServer) -> bool:
    """A kept server is usable: its container or process is there and its port accepts.

    It answered the protocol probe when it was kept, with the credentials on record; a
    TCP connect is enough now and spares importing the driver before the first test.
    """
    if isinstance(server, (AttachedContainer, AttachedProcess)) and not server.is_alive():
        return False
    try:
        with socket.create_connection((server.endpoint.host, server.endpoint.port), timeout=2):
            return True
    except OSError:
        return False


def _container_runs(container_id: str) -> bool:
    """The engine's socket says the container runs (False when absent, stopped or unsure)."""
    attrs = inspected("containers", container_id)
    if not isinstance(attrs, dict):
        return False
    state = attrs.get("State")
    return isinstance(state, dict) and state.get("Status") == "running"


def _package_version() -> str:
    try:
        return version("pytest-integration-kit")
    except PackageNotFoundError:
        return "unknown"
