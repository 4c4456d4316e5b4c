"""How long servers live and who shares them: start lazily, in parallel, stop at the end."""

from __future__ import annotations

import os
import socket
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pytest_integration_kit.backends.base import Backend, RunningServer, ServerOptions
from pytest_integration_kit.errors import BackendUnavailable
from pytest_integration_kit.services import spec_for

if TYPE_CHECKING:
    from collections.abc import Iterable
    from pathlib import Path

    from pytest_integration_kit.services.endpoint import Endpoint
    from pytest_integration_kit.settings import Settings

__all__ = ["AUTO_ORDER", "ServerRequest", "ServerSet", "StartRecord"]

#: What ``auto`` tries, in order.
AUTO_ORDER = ("docker", "local")


@dataclass(frozen=True)
class ServerRequest:
    """Which server a fixture asks for. Equal requests share one server.

    Every field left None is taken from the settings at start time.
    """

    service: str
    backend: str | None = None
    image: str | None = None
    url: str | None = field(default=None, repr=False)
    bin_dir: Path | None = None
    port: int | None = None
    startup_timeout: float | None = None


@dataclass(frozen=True)
class StartRecord:
    """What the run started, for the terminal report."""

    request: ServerRequest
    backend: str
    endpoint: Endpoint
    seconds_to_ready: float
    tried: tuple[str, ...] = ()


class ServerSet:
    """The servers of one pytest session (or one script), keyed by request.

    Thread-safe: :meth:`start_all` starts several at once and :meth:`get` waits for one.
    Failures are cached too, so every test that needs a missing backend hears the same
    reason without trying again.
    """

    def __init__(
        self, settings: Settings, *, session_id: str, backends: dict[str, Backend]
    ) -> None:
        self.settings = settings
        self.session_id = session_id
        self.backends = backends
        self._lock = threading.Lock()
        self._futures: dict[ServerRequest, Future[RunningServer]] = {}
        self._executor = ThreadPoolExecutor(max_workers=8, thread_name_prefix="integration-start")
        self.records: list[StartRecord] = []
        self._servers: list[RunningServer] = []

    # -- resolving ------------------------------------------------------------------

    def backend_choice(self, request: ServerRequest) -> str:
        return request.backend or str(self.settings[f"{request.service}_backend"])

    def options(self, request: ServerRequest) -> ServerOptions:
        service = request.service
        s = self.settings
        return ServerOptions(
            spec=spec_for(service),
            image=request.image or str(s[f"{service}_image"]),
            url=request.url if request.url is not None else s[f"{service}_url"],
            bin_dir=request.bin_dir if request.bin_dir is not None else s[f"{service}_bin_dir"],
            port=request.port,
            startup_timeout=request.startup_timeout or float(s["startup_timeout"]),
            session_id=self.session_id,
            labels={
                "pytest-integration-kit.owner-pid": str(os.getpid()),
                "pytest-integration-kit.owner-host": socket.gethostname(),
            },
        )

    # -- starting -------------------------------------------------------------------

    def start_all(self, requests: Iterable[ServerRequest]) -> None:
        """Begin starting every request at once; returns without waiting."""
        for request in requests:
            self._future(request)

    def get(self, request: ServerRequest) -> RunningServer:
        """The running server for ``request``, starting it if nobody has yet."""
        return self._future(request).result()

    def _future(self, request: ServerRequest) -> Future[RunningServer]:
        with self._lock:
            future = self._futures.get(request)
            if future is None:
                future = self._executor.submit(self._start, request)
                self._futures[request] = future
            return future

    def _start(self, request: ServerRequest) -> RunningServer:
        options = self.options(request)
        choice = self.backend_choice(request)
        tried: list[str] = []
        if choice == "auto":
            backend = None
            for name in AUTO_ORDER:
                reason = self.backends[name].unavailable_reason(options)
                if reason is None:
                    backend = self.backends[name]
                    break
                tried.append(f"{name}: {reason}")
            if backend is None:
                raise BackendUnavailable(
                    f"no backend can run {options.spec.title} (integration_backend=auto tried "
                    "docker, then local):\n  - " + "\n  - ".join(tried)
                )
        else:
            backend = self.backends[choice]
        started = time.monotonic()
        server = backend.start(options)
        with self._lock:
            self._servers.append(server)
            self.records.append(
                StartRecord(
                    request,
                    backend.name,
                    server.endpoint,
                    server.seconds_to_ready or time.monotonic() - started,
                    tuple(tried),
                )
            )
        return server

    # -- stopping -------------------------------------------------------------------

    def stop_all(self) -> None:
        """Stop every server this set started, newest first, waiting for starts in flight."""
        with self._lock:
            futures = list(self._futures.values())
        for future in futures:
            future.exception()  # wait; failures were reported where they happened
        self._executor.shutdown(wait=True)
        with self._lock:
            servers, self._servers = self._servers[::-1], []
        for server in servers:
            server.stop()

    def running(self) -> list[RunningServer]:
        with self._lock:
            return list(self._servers)
