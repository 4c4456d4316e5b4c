"""How one request becomes a running server in this process.

Its :class:`~pytest_integration_kit.backends.base.ServerOptions` come from the settings
(:meth:`ServerStarter.options`); its backend is the one the request or the setting
names, or under ``auto`` the first of :data:`AUTO_ORDER` that can run it (a provider
chain). With ``integration_reuse`` the kept server of its slot is attached instead
when it matches (:mod:`~pytest_integration_kit.lifecycle.kept_slots`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pytest_integration_kit.backends.base import ServerOptions
from pytest_integration_kit.backends.docker import preload_docker_modules
from pytest_integration_kit.errors import BackendUnavailable
from pytest_integration_kit.lifecycle.attached import handle_of
from pytest_integration_kit.lifecycle.kept_slots import KeptSlots, docker_modules
from pytest_integration_kit.lifecycle.records import ServerRecord, endpoint_fields
from pytest_integration_kit.services import spec_for
from pytest_integration_kit.settings import mask_url_password

if TYPE_CHECKING:
    from collections.abc import Callable

    from pytest_integration_kit.backends.base import Backend, RunningServer
    from pytest_integration_kit.lifecycle.kept import KeptServers
    from pytest_integration_kit.lifecycle.owner import Owner
    from pytest_integration_kit.lifecycle.requests import ServerRequest
    from pytest_integration_kit.services.endpoint import Endpoint
    from pytest_integration_kit.settings import Settings

__all__ = ["AUTO_ORDER", "ServerStarter", "StartRecord"]

#: What ``auto`` tries, in order.
AUTO_ORDER = ("docker", "local")


@dataclass(frozen=True)
class StartRecord:
    """What this process started or attached, for the terminal report."""

    request: ServerRequest
    backend: str
    endpoint: Endpoint
    seconds_to_ready: float
    tried: tuple[str, ...] = ()
    reused: bool = False
    kept: bool = False
    started_by: str = "main"
    warm: bool = False

    @classmethod
    def of(cls, request: ServerRequest, record: ServerRecord, endpoint: Endpoint) -> StartRecord:
        """The start of ``request`` as ``record`` (this process's or another's) has it."""
        return cls(
            request,
            record.backend,
            endpoint,
            record.seconds_to_ready,
            tried=record.tried,
            reused=record.reused,
            kept=record.kept,
            started_by=record.started_by,
            warm=record.warm,
        )


class ServerStarter:
    """Starts the server of one request here (or attaches the kept one) and says how.

    ``owner`` gives the owner whose labels the server carries (made on first need);
    ``progress`` is told ``(service, kind, text)``: ``start``, ``pull``, ``attach``,
    ``ready``.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        session_id: str,
        backends: dict[str, Backend],
        owner: Callable[[], Owner],
        kept: KeptServers | None,
        coordinator: bool,
        worker_id: str,
        project: str,
        progress: Callable[[str, str, str], None],
    ) -> None:
        self.settings = settings
        self.session_id = session_id
        self.backends = backends
        self._owner = owner
        self.kept = kept
        self.coordinator = coordinator
        self.worker_id = worker_id
        self._progress = progress
        #: The kept servers of this project (used when ``reuse`` is on).
        self.slots = (
            KeptSlots(
                kept,
                settings=settings,
                backends=backends,
                project=project,
                worker_id=worker_id,
                progress=progress,
            )
            if kept is not None
            else None
        )

    @property
    def reuse(self) -> bool:
        return bool(self.settings["reuse"]) and self.kept is not None

    def backend_choice(self, request: ServerRequest) -> str:
        return request.backend or str(self.settings[f"{request.service}_backend"])

    def options(self, request: ServerRequest) -> ServerOptions:
        service = request.service
        s = self.settings
        spec = spec_for(service)
        # The spec's own settings (server options, extensions…), by key.
        given = {setting.name: s.resolved.get(setting.name) for setting in spec.extra_settings()}
        values = {
            name.removeprefix(f"{service}_"): resolved.value
            for name, resolved in given.items()
            if resolved is not None and resolved.value is not None
        }
        return ServerOptions(
            spec=spec.configured(values),
            image=request.image or str(s[f"{service}_image"]),
            url=request.url if request.url is not None else s[f"{service}_url"],
            bin_dir=request.bin_dir if request.bin_dir is not None else s[f"{service}_bin_dir"],
            port=request.port,
            startup_timeout=request.startup_timeout or float(s["startup_timeout"]),
            session_id=self.session_id,
            labels=self._owner().labels(),
            warm_dir=(
                self.kept.cache_dir
                if self.kept is not None and self.settings["warm_start"]
                else None
            ),
            # Ryuk reaps when the process that started a container exits: not for servers
            # shared with other processes or kept for later runs.
            ryuk=bool(self.settings["ryuk"]) and self.coordinator and not self.reuse,
            direct=bool(self.settings["docker_direct"]),
            host_network=bool(self.settings["docker_host_network"]),
            progress=lambda text: self._progress(service, "pull", text),
            password=self._password(service),
        )

    def _password(self, service: str) -> str | None:
        """``integration_<service>_password`` where the service has one; None: random."""
        resolved = self.settings.resolved.get(f"{service}_password")
        value = resolved.value if resolved is not None else None
        return None if value is None else str(getattr(value, "reveal", lambda: value)())

    def may_use_docker(self, request: ServerRequest) -> bool:
        """Whether starting ``request`` may need docker-py (to preload it in the main
        thread): not on another backend, nor to attach a kept server that can do
        without (:meth:`KeptSlots.may_use_docker`)."""
        choice = self.backend_choice(request)
        if choice not in ("auto", "docker"):
            return False
        if not self.reuse or self.slots is None:
            return True
        return self.slots.may_use_docker(request, choice)

    def start(self, request: ServerRequest) -> tuple[RunningServer, ServerRecord]:
        """Start a server for ``request`` here, or attach a kept one (``reuse``); the
        server and the record of how it came to be."""
        options = self.options(request)
        started = time.monotonic()
        attached = self._kept_for_auto(request, options)
        if attached is not None:
            backend, server, config_hash = attached
            tried: list[str] = []
            reused = True
        else:
            backend, tried = self._choose(request, options)
            self._progress(request.service, "start", _starting(request, options, backend.name))
            started = time.monotonic()
            reused = False
            config_hash = ""
            if self.reuse and backend.name != "url":
                assert self.slots is not None
                server, reused, config_hash = self.slots.attach_or_keep(request, options, backend)
            else:
                docker_modules(backend)
                server = backend.start(options)
        seconds = (
            time.monotonic() - started if reused else server.seconds_to_ready
        ) or time.monotonic() - started
        self._progress(
            request.service,
            "ready",
            f"{request.service} {'attached' if reused else 'ready'} on {backend.name} "
            f"in {seconds:.2f} s",
        )
        record = ServerRecord(
            key=request.key,
            service=request.service,
            backend=backend.name,
            endpoint=endpoint_fields(server.endpoint),
            handle=handle_of(server),
            seconds_to_ready=seconds,
            reused=reused,
            kept=bool(config_hash),
            started_by=self.worker_id,
            started_at=time.time(),
            config_hash=config_hash,
            tried=tuple(tried),
            warm=server.warm and not reused,
        )
        return server, record

    def _kept_for_auto(
        self, request: ServerRequest, options: ServerOptions
    ) -> tuple[Backend, RunningServer, str] | None:
        """Under ``auto`` with ``reuse``: the slot's kept server, if it matches and
        answers, attached before any backend is probed (:meth:`KeptSlots.attach_kept`)."""
        if not self.reuse or self.backend_choice(request) != "auto":
            return None
        assert self.slots is not None
        return self.slots.attach_kept(request, options, among=AUTO_ORDER)

    def _choose(self, request: ServerRequest, options: ServerOptions) -> tuple[Backend, list[str]]:
        choice = self.backend_choice(request)
        tried: list[str] = []
        if choice != "auto":
            return self.backends[choice], tried
        preload_docker_modules()  # see docker_modules: auto asks docker first
        for name in AUTO_ORDER:
            reason = self.backends[name].unavailable_reason(options)
            if reason is None:
                return self.backends[name], tried
            tried.append(f"{name}: {reason}")
        raise BackendUnavailable(
            f"no backend can run {options.spec.title} (integration_backend=auto tried "
            "docker, then local):\n  - " + "\n  - ".join(tried),
            tried=tuple(tried),
        )


def _starting(request: ServerRequest, options: ServerOptions, backend: str) -> str:
    """``starting postgres on docker (postgres:17.6)…``: what, how, from what."""
    if backend == "docker":
        what = options.image
    elif backend == "url":
        what = mask_url_password(options.url or "")
    else:
        what = str(options.bin_dir) if options.bin_dir is not None else "binaries on PATH"
    return f"starting {request.service} on {backend} ({what})…"
