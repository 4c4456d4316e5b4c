"""How long servers live and who shares them.

A :class:`ServerSet` starts servers lazily and in parallel (a thread per request). On
its own it serves one process and stops what it started. Given a
:class:`~pytest_integration_kit.lifecycle.run.RunDirectory` it shares them across the
processes of a run (xdist workers): the first process that needs a server starts it
under a file lock and records it, the others attach, and the *coordinator* (the xdist
controller, or the only process) stops them all at the end. With ``reuse`` servers
are kept for the next run in a :class:`~pytest_integration_kit.lifecycle.kept.KeptServers`
registry, matched by a hash of their configuration. The steps live beside it:
``parallel_starts``, ``starting``, ``kept_slots``, ``run_sharing``, ``session_end``.
"""

from __future__ import annotations

import threading
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_integration_kit.backends.docker import preload_docker_modules
from pytest_integration_kit.lifecycle.attached import attach
from pytest_integration_kit.lifecycle.kept import KeptServers
from pytest_integration_kit.lifecycle.kept_slots import config_hash
from pytest_integration_kit.lifecycle.owner import Owner
from pytest_integration_kit.lifecycle.parallel_starts import ParallelStarts
from pytest_integration_kit.lifecycle.reaper import Reaper, ReapReport
from pytest_integration_kit.lifecycle.reaping import BackgroundReap, reaper_needs_docker
from pytest_integration_kit.lifecycle.records import ServerRecord, endpoint_fields
from pytest_integration_kit.lifecycle.requests import ServerRequest
from pytest_integration_kit.lifecycle.run import LOCK_MARGIN
from pytest_integration_kit.lifecycle.run_sharing import RunSharing
from pytest_integration_kit.lifecycle.session_end import end_session
from pytest_integration_kit.lifecycle.starting import AUTO_ORDER, ServerStarter, StartRecord

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from pytest_integration_kit.backends.base import Backend, RunningServer, ServerOptions
    from pytest_integration_kit.lifecycle.run import RunDirectory
    from pytest_integration_kit.services.endpoint import Endpoint
    from pytest_integration_kit.settings import Settings

# ServerRequest, AUTO_ORDER and StartRecord live in requests and starting; this module
# named them before they moved there, so they are still importable from here.
__all__ = ["AUTO_ORDER", "ServerRequest", "ServerSet", "StartRecord"]


class ServerSet:
    """The servers of one pytest session (or one script), keyed by request.

    Thread-safe: :meth:`start_all` starts several at once and :meth:`get` waits for one.
    Failures are cached too (in the run directory when shared), so every test that
    needs a missing backend hears the same reason without trying again.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        session_id: str,
        backends: dict[str, Backend],
        owner: Owner | None = None,
        run: RunDirectory | None = None,
        kept: KeptServers | None = None,
        coordinator: bool = True,
        worker_id: str = "main",
        project: str = "",
        shared: bool | None = None,
        runs_root: Path | None = None,
    ) -> None:
        self.settings = settings
        self.session_id = session_id
        self.backends = backends
        # Made when first needed (a start, a share): it reads the process's start time.
        self._owner = owner
        #: Whether servers are shared through a run directory (xdist, the plugin).
        self.shared = run is not None if shared is None else shared
        self._sharing = RunSharing(
            session_id,
            owner=lambda: self.owner,
            coordinator=coordinator,
            worker_id=worker_id,
            run=run,
            runs_root=runs_root,
        )
        #: Servers that could not be stopped at the end, and why (see :meth:`stop_all`).
        self.stop_failures: list[str] = []
        self._stopped = False
        self._final_summary: list[ServerRecord] | None = None
        self.kept = kept
        self.coordinator = coordinator
        self.worker_id = worker_id
        self.project = project
        self._starter = ServerStarter(
            settings,
            session_id=session_id,
            backends=backends,
            owner=lambda: self.owner,
            kept=kept,
            coordinator=coordinator,
            worker_id=worker_id,
            project=project,
            progress=self._progress,
        )
        self._starts = ParallelStarts(self._obtain)
        self._lock = threading.Lock()  # guards records, _started and _kept_keys
        self.records: list[StartRecord] = []
        #: Servers this process started, by request key (for stopping in order).
        self._started: dict[str, RunningServer] = {}
        self._kept_keys: set[str] = set()
        self._reaping: BackgroundReap | None = None
        self.reaped = ReapReport()
        #: Told, from any thread, what is starting: ``(service, kind, text)`` with kind
        #: ``start``, ``pull`` or ``ready``. The pytest plugin prints it.
        self.on_progress: Callable[[str, str, str], None] | None = None
        #: Called every 0.1 s while :meth:`get` waits for a server (to print progress).
        self.on_wait: Callable[[], None] | None = None

    @property
    def owner(self) -> Owner:
        """Who owns this set's servers: the coordinator's process."""
        if self._owner is None:
            self._owner = Owner.current()
        return self._owner

    @property
    def run(self) -> RunDirectory | None:
        """The run directory, once made (by the first server needed, in any process)."""
        return self._sharing.run

    @property
    def notes(self) -> list[str]:
        """Things the user should hear about (a refused runs root…), for the summary."""
        return self._sharing.notes

    @property
    def reuse(self) -> bool:
        return self._starter.reuse

    # -- building one per process ------------------------------------------------------

    @classmethod
    def for_process(
        cls,
        settings: Settings,
        *,
        backends: dict[str, Backend],
        session_id: str,
        shared: dict[str, Any] | None = None,
        worker_id: str = "main",
        project: str = "",
        cache_dir: Path | None = None,
    ) -> ServerSet:
        """The set of a coordinator (``shared`` None) or of a worker joining its run.

        ``shared`` is what the coordinator's :meth:`share` returned.
        Nothing is made on disk here: the run directory comes with the first server.
        With ``reuse``, the cache dir is checked now (:class:`ConfigError` if unusable).
        """
        kept = KeptServers(cache_dir) if cache_dir is not None else None
        if kept is not None and shared is None and settings["reuse"]:
            kept.check_usable()
        owner = None  # this process (ServerSet.owner)
        runs_root = None
        if shared is not None:
            owner = Owner.from_labels(shared["owner"])
            session_id = str(shared["session"])
            runs_root = Path(shared["runs_root"])
        return cls(
            settings,
            session_id=session_id,
            backends=backends,
            owner=owner,
            kept=kept,
            coordinator=shared is None,
            worker_id=worker_id,
            project=project,
            shared=True,
            runs_root=runs_root,
        )

    def share(self) -> dict[str, Any]:
        """What a worker needs to join this run (JSON-able, for xdist's workerinput).

        Chooses the runs root (all workers must use the same) but makes no run dir.
        """
        if not self.shared:
            raise RuntimeError("this ServerSet has no run directory to share")
        return self._sharing.share()

    def run_directory(self) -> RunDirectory:
        """The run directory, for what else the run's processes share (a Compose
        environment): its locks and files live as long as the run."""
        return self._sharing.directory()

    # -- reaping ----------------------------------------------------------------------

    def reap_dead_sessions(self, *, background: bool = True) -> None:
        """Remove what dead sessions left behind (in a thread, joined by :meth:`stop_all`)."""
        docker_used = reaper_needs_docker(self.settings)
        # Every safe runs root of this user (a library user's own root only).
        root = None if self.shared and self.run is None else self._sharing.runs_root
        if not background:
            self.reaped = Reaper(runs_root=root, docker=docker_used).reap_dead()
            return
        # The reaper imports docker-py itself (under preload's lock) only when the
        # engine lists a dead session's container: most runs never import it.
        self._reaping = BackgroundReap.start(runs_root=root, docker=docker_used)

    def adopt_reaping(self, reaping: BackgroundReap) -> None:
        """Take the pass begun before this set was made (the plugin starts it at once):
        :meth:`stop_all` waits for it before stopping anything."""
        self._reaping = reaping

    def reaping_done(self) -> ReapReport:
        """Wait for the reaper started by :meth:`reap_dead_sessions`; what it removed."""
        if self._reaping is not None:
            self.reaped = self._reaping.done()
            self._reaping = None
        return self.reaped

    # -- resolving --------------------------------------------------------------------

    def private(self, request: ServerRequest) -> ServerRequest:
        """``request`` as this process asks for it: its own server where the service runs
        one per worker (``integration_redis_per_worker``), else unchanged (shared)."""
        if request.worker or request.service != "redis":
            return request
        per_worker = self.settings.resolved.get("redis_per_worker")
        if per_worker is None or not per_worker.value:
            return request
        if self.backend_choice(request) == "url":
            return request  # one server by URL: shared all the same (a conflict warning says so)
        return request._replace(worker=self.worker_id)

    def backend_choice(self, request: ServerRequest) -> str:
        return self._starter.backend_choice(request)

    def options(self, request: ServerRequest) -> ServerOptions:
        return self._starter.options(request)

    def config_hash(self, request: ServerRequest, options: ServerOptions, backend: Backend) -> str:
        """What a kept server must match to be reused: image or binaries, settings, schema."""
        return config_hash(self.settings, request, options, backend)

    def _progress(self, service: str, kind: str, text: str) -> None:
        if self.on_progress is not None:
            self.on_progress(service, kind, text)

    # -- starting ---------------------------------------------------------------------

    def start_all(self, requests: Iterable[ServerRequest]) -> None:
        """Begin starting every request at once; returns without waiting."""
        requests = list(requests)
        requests = [self.private(r) for r in requests]
        if any(self._starter.may_use_docker(r) for r in requests):
            preload_docker_modules()
        for request in requests:
            self._starts.begin(request)

    def get(self, request: ServerRequest) -> RunningServer:
        """The running server for ``request``, starting it if nobody has yet."""
        request = self.private(request)
        if self._starter.may_use_docker(request):
            preload_docker_modules()
        future = self._starts.begin(request)
        while True:
            try:
                return future.result(timeout=0.1 if self.on_wait is not None else None)
            except FutureTimeout:
                if self.on_wait is not None:
                    self.on_wait()

    def wait(self, request: ServerRequest) -> RunningServer | None:
        """The server of a start already begun, once it is over (raises as it failed);
        None when nobody began one. Prints nothing: for background threads."""
        future = self._starts.of(self.private(request))
        return None if future is None else future.result()

    def done(self, request: ServerRequest) -> bool:
        """Whether the start of ``request`` is over (it succeeded or failed)."""
        future = self._starts.of(self.private(request))
        return future is None or future.done()

    def settle(self) -> None:
        """Wait until every start begun has succeeded or failed (nothing stays half-way)."""
        self._starts.settle()

    def _obtain(self, request: ServerRequest) -> RunningServer:
        if not self.shared:
            return self._provide(request)[0]
        timeout = (request.startup_timeout or float(self.settings["startup_timeout"])) + LOCK_MARGIN
        return self._sharing.obtain(
            request,
            backend=self.backend_choice(request),
            timeout=timeout,
            start=self._provide,
            attach=self._attach_recorded,
        )

    def _provide(self, request: ServerRequest) -> tuple[RunningServer, ServerRecord]:
        """Start a server for ``request`` here, or attach a kept one (``reuse``)."""
        server, record = self._starter.start(request)
        with self._lock:
            self._started[request.key] = server
            if record.kept:
                self._kept_keys.add(request.key)
            self.records.append(StartRecord.of(request, record, server.endpoint))
        return server, record

    def _attach_recorded(self, request: ServerRequest, record: ServerRecord) -> RunningServer:
        """Use a server another process of this run started (this one's, if it was)."""
        server = self._started.get(record.key) or attach(record)
        with self._lock:
            self.records.append(StartRecord.of(request, record, server.endpoint))
        return server

    # -- using ------------------------------------------------------------------------

    def is_kept(self, endpoint: Endpoint) -> bool:
        """Whether the server at ``endpoint`` is kept for later runs (``reuse``)."""
        with self._lock:
            records = list(self.records)
        return any(
            r.kept
            and (r.endpoint.service, r.endpoint.host, r.endpoint.port)
            == (endpoint.service, endpoint.host, endpoint.port)
            for r in records
        )

    def started(self, request: ServerRequest) -> RunningServer | None:
        """The server ``request`` got, if its start is over and succeeded."""
        return self._starts.succeeded(self.private(request))

    def running(self) -> list[RunningServer]:
        """Every server this process has obtained so far (started or attached), up."""
        return self._starts.running()

    def log_tail(self, request: ServerRequest, lines: int = 40) -> str | None:
        """The tail of the log of the server ``request`` got, if it has one by now."""
        server = self.started(request)
        if server is None or server.endpoint.backend == "url":
            return None
        return server.log_tail(lines)

    def summary(self) -> list[ServerRecord]:
        """Every server of the run (all workers'), for the end-of-session report."""
        if self._final_summary is not None:
            return self._final_summary
        run = self._sharing.known()
        if run is not None and self.coordinator:
            return [r for r in run.records() if r.error_kind is None]
        return [
            ServerRecord(
                key=r.request.key,
                service=r.request.service,
                backend=r.backend,
                endpoint=endpoint_fields(r.endpoint),
                seconds_to_ready=r.seconds_to_ready,
                reused=r.reused,
                kept=r.kept,
                started_by=r.started_by,
                tried=r.tried,
                warm=r.warm,
            )
            for r in self.records
        ]

    # -- stopping ---------------------------------------------------------------------

    def stop_all(self) -> None:
        """End of the session: stop what this set is responsible for, keep kept ones.

        Alone (no run directory) that is what it started. A worker stops nothing: the
        coordinator stops every server of the run, whoever started it, then removes
        whatever a crashed worker may have left half-started. What could not be stopped
        (a Docker engine gone) is listed in :attr:`stop_failures`, and the run directory
        is then kept so that the next run's reaper finds it. Idempotent.
        """
        if self._stopped:
            return
        self._stopped = True
        self._starts.settle()  # failures were reported where they happened
        self._starts.shutdown()
        self.reaping_done()
        self._final_summary = self.summary()  # before the run directory goes
        with self._lock:
            started, self._started = self._started, {}
        self.stop_failures += end_session(
            started,
            kept_keys=self._kept_keys,
            run=self._sharing.known(),
            runs_root=self._sharing.runs_root,
            coordinator=self.coordinator,
            session_id=self.session_id,
            backends=self.backends.values(),
            # Bounds the backends' background work (a warm image being built).
            finish_timeout=2 * float(self.settings["startup_timeout"]) + 60,
        )
