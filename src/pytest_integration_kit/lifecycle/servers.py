"""How long servers live and who shares them.

A :class:`ServerSet` starts servers lazily and in parallel (a thread per request). On
its own it serves one process and stops what it started. Given a
:class:`~pytest_integration_kit.lifecycle.run.RunDirectory` it shares them across the
processes of a run (xdist workers): the first process that needs a server starts it
under a file lock and records it, the others attach, and the *coordinator* (the xdist
controller, or the only process) stops them all at the end. With ``reuse`` servers
are kept for the next run in a :class:`~pytest_integration_kit.lifecycle.kept.KeptServers`
registry, matched by a hash of their configuration.
"""

from __future__ import annotations

import contextlib
import dataclasses
import socket
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_integration_kit.backends.base import Backend, RunningServer, ServerOptions
from pytest_integration_kit.backends.docker import preload_docker_modules
from pytest_integration_kit.errors import BackendUnavailable, MissingExtra, ServerStartError
from pytest_integration_kit.lifecycle.attached import (
    AttachedContainer,
    AttachedProcess,
    attach,
    docker_client,
    handle_of,
)
from pytest_integration_kit.lifecycle.engine import ABSENT, inspected
from pytest_integration_kit.lifecycle.kept import REUSE_LABEL, KeptServers
from pytest_integration_kit.lifecycle.owner import Owner
from pytest_integration_kit.lifecycle.reaper import Reaper, ReapReport
from pytest_integration_kit.lifecycle.reaping import BackgroundReap, reaper_needs_docker
from pytest_integration_kit.lifecycle.records import ServerRecord, digest, endpoint_fields
from pytest_integration_kit.lifecycle.requests import ServerRequest
from pytest_integration_kit.lifecycle.run import (
    RunDirectory,
    choose_runs_root,
    discard_fallback_root,
    runs_root,
)
from pytest_integration_kit.services import spec_for
from pytest_integration_kit.settings import mask_url_password

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from pytest_integration_kit.services.endpoint import Endpoint
    from pytest_integration_kit.settings import Settings

__all__ = ["AUTO_ORDER", "ServerRequest", "ServerSet", "StartRecord"]

#: What ``auto`` tries, in order.
AUTO_ORDER = ("docker", "local")

#: Seconds, beyond the start-up timeout, a process waits for another to start a server.
LOCK_MARGIN = 120.0


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
        #: The run directory, once made (by the first server needed, in any process).
        self.run = run
        #: Whether servers are shared through a run directory (xdist, the plugin).
        self.shared = run is not None if shared is None else shared
        self._runs_root = run.path.parent if run is not None else runs_root
        self._run_lock = threading.Lock()
        #: Things the user should hear about (a refused runs root…), for the summary.
        self.notes: list[str] = []
        #: Servers that could not be stopped at the end, and why (see :meth:`stop_all`).
        self.stop_failures: list[str] = []
        self._stopped = False
        self._final_summary: list[ServerRecord] | None = None
        self.kept = kept
        self.coordinator = coordinator
        self.worker_id = worker_id
        self.project = project
        self._lock = threading.Lock()
        self._futures: dict[ServerRequest, Future[RunningServer]] = {}
        self._executor = ThreadPoolExecutor(max_workers=8, thread_name_prefix="integration-start")
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
        return {
            "session": self.session_id,
            "owner": self.owner.labels(),
            "runs_root": str(self._root()),
        }

    def _root(self) -> Path:
        with self._run_lock:
            if self._runs_root is None:
                try:
                    self._runs_root, note = choose_runs_root()
                except OSError:
                    # A temp dir we cannot write to: the first server request says so.
                    self._runs_root, note = runs_root(), None
                if note is not None:
                    self.notes.append(note)
            return self._runs_root

    def _run_dir(self) -> RunDirectory:
        """The run directory, made (or joined) now if this is the first need of it."""
        root = self._root()
        with self._run_lock:
            if self.run is None:
                try:
                    run = RunDirectory.create(self.session_id, self.owner, root)
                    if not self.coordinator:
                        run.register_process(self.worker_id, Owner.current())
                except OSError as exc:
                    raise ServerStartError(
                        f"cannot use the directory of this run in {root}: {exc}"
                    ) from None
                self.run = run
            return self.run

    def run_directory(self) -> RunDirectory:
        """The run directory, for what else the run's processes share (a Compose
        environment): its locks and files live as long as the run."""
        return self._run_dir()

    def _known_run(self) -> RunDirectory | None:
        """The run directory if any process of the run made it (without making it)."""
        if self.run is not None:
            return self.run
        if self._runs_root is None:
            return None
        path = self._runs_root / self.session_id
        return RunDirectory(path) if path.is_dir() and not path.is_symlink() else None

    @property
    def reuse(self) -> bool:
        return bool(self.settings["reuse"]) and self.kept is not None

    # -- reaping ----------------------------------------------------------------------

    def reap_dead_sessions(self, *, background: bool = True) -> None:
        """Remove what dead sessions left behind (in a thread, joined by :meth:`stop_all`)."""
        docker_used = reaper_needs_docker(self.settings)
        # Every safe runs root of this user (a library user's own root only).
        root = None if self.shared and self.run is None else self._runs_root
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
            labels=self.owner.labels(),
            warm_dir=(
                self.kept.cache_dir
                if self.kept is not None and self.settings["warm_start"]
                else None
            ),
            # Ryuk reaps when the process that started a container exits: not for servers
            # shared with other processes or kept for later runs.
            ryuk=bool(self.settings["ryuk"]) and self.coordinator and not self.reuse,
            progress=lambda text: self._progress(service, "pull", text),
            password=self._password(service),
        )

    def _password(self, service: str) -> str | None:
        """``integration_<service>_password`` where the service has one; None: random."""
        resolved = self.settings.resolved.get(f"{service}_password")
        value = resolved.value if resolved is not None else None
        return None if value is None else str(getattr(value, "reveal", lambda: value)())

    def _progress(self, service: str, kind: str, text: str) -> None:
        if self.on_progress is not None:
            self.on_progress(service, kind, text)

    def _attaching(self, request: ServerRequest, backend: Backend) -> None:
        # Nothing to announce: the first test need not wait for the probe before it
        # starts (importing its drivers meanwhile); a kept server that does not answer
        # is replaced and its start announced then.
        self._progress(request.service, "attach", f"{request.service} kept on {backend.name}")

    def config_hash(self, request: ServerRequest, options: ServerOptions, backend: Backend) -> str:
        """What a kept server must match to be reused: image or binaries, settings, schema."""
        identity: list[object] = [
            _package_version(),
            type(options.spec).__module__,
            type(options.spec).__qualname__,
            backend.name,
            request.port,
            str(self.settings["schema"]),
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

    # -- starting ---------------------------------------------------------------------

    def start_all(self, requests: Iterable[ServerRequest]) -> None:
        """Begin starting every request at once; returns without waiting."""
        requests = list(requests)
        requests = [self.private(r) for r in requests]
        if any(self._may_use_docker(r) for r in requests):
            preload_docker_modules()
        for request in requests:
            self._future(request)

    def get(self, request: ServerRequest) -> RunningServer:
        """The running server for ``request``, starting it if nobody has yet."""
        request = self.private(request)
        if self._may_use_docker(request):
            preload_docker_modules()
        future = self._future(request)
        while True:
            try:
                return future.result(timeout=0.1 if self.on_wait is not None else None)
            except FutureTimeout:
                if self.on_wait is not None:
                    self.on_wait()

    def wait(self, request: ServerRequest) -> RunningServer | None:
        """The server of a start already begun, once it is over (raises as it failed);
        None when nobody began one. Prints nothing: for background threads."""
        request = self.private(request)
        with self._lock:
            future = self._futures.get(request)
        return None if future is None else future.result()

    def done(self, request: ServerRequest) -> bool:
        """Whether the start of ``request`` is over (it succeeded or failed)."""
        request = self.private(request)
        with self._lock:
            future = self._futures.get(request)
        return future is None or future.done()

    def settle(self) -> None:
        """Wait until every start begun has succeeded or failed (nothing stays half-way)."""
        with self._lock:
            futures = list(self._futures.values())
        for future in futures:
            future.exception()

    def _future(self, request: ServerRequest) -> Future[RunningServer]:
        with self._lock:
            future = self._futures.get(request)
            if future is None:
                future = self._executor.submit(self._obtain, request)
                self._futures[request] = future
            return future

    def _obtain(self, request: ServerRequest) -> RunningServer:
        if not self.shared:
            return self._provide(request)[0]
        run = self._run_dir()
        timeout = (request.startup_timeout or float(self.settings["startup_timeout"])) + LOCK_MARGIN
        lock = run.lock(request.key, timeout)
        from filelock import Timeout  # noqa: PLC0415 - loaded by run.lock already

        try:
            lock.acquire()
        except Timeout:
            raise ServerStartError(
                f"waited {timeout:g} s for another process of this run to start "
                f"{spec_for(request.service).title} (lock {lock.lock_file})"
            ) from None
        try:
            return self._obtain_shared(request, run)
        finally:
            lock.release()

    def _obtain_shared(self, request: ServerRequest, run: RunDirectory) -> RunningServer:
        """Under the request's lock: attach what another process recorded, or start it
        here and record it (a failure too)."""
        record = run.read(request.key)
        if record is not None:
            return self._attach_shared(request, record)
        try:
            server, record = self._provide(request)
        except MissingExtra as exc:
            run.write(self._failure(request, "extra", exc))
            raise
        except BackendUnavailable as exc:
            run.write(self._failure(request, "unavailable", exc))
            raise
        except ServerStartError as exc:
            run.write(self._failure(request, "start", exc))
            raise
        run.write(record)
        return server

    def _failure(self, request: ServerRequest, kind: str, exc: Exception) -> ServerRecord:
        return ServerRecord(
            key=request.key,
            service=request.service,
            backend=self.backend_choice(request),
            started_by=self.worker_id,
            started_at=time.time(),
            error_kind=kind,
            error=str(exc),
            tried=getattr(exc, "tried", ()),
        )

    def _attach_shared(self, request: ServerRequest, record: ServerRecord) -> RunningServer:
        """Use a server another process of this run started (or failed to)."""
        if record.error_kind == "extra":
            raise MissingExtra(record.error or "")
        if record.error_kind == "unavailable":
            raise BackendUnavailable(record.error or "", tried=record.tried)
        if record.error_kind is not None:
            raise ServerStartError(record.error or "")
        server = self._started.get(record.key) or attach(record)
        with self._lock:
            self.records.append(
                StartRecord(
                    request,
                    record.backend,
                    server.endpoint,
                    record.seconds_to_ready,
                    tried=record.tried,
                    reused=record.reused,
                    kept=record.kept,
                    started_by=record.started_by,
                    warm=record.warm,
                )
            )
        return server

    def _choose(self, request: ServerRequest, options: ServerOptions) -> tuple[Backend, list[str]]:
        choice = self.backend_choice(request)
        tried: list[str] = []
        if choice != "auto":
            return self.backends[choice], tried
        preload_docker_modules()  # see _docker_modules: auto asks docker first
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

    def _provide(self, request: ServerRequest) -> tuple[RunningServer, ServerRecord]:
        """Start a server for ``request`` here, or attach a kept one (``reuse``)."""
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
                server, reused, config_hash = self._kept_or_started(request, options, backend)
            else:
                _docker_modules(backend)
                server = backend.start(options)
        seconds = (
            time.monotonic() - started if reused else server.seconds_to_ready
        ) or time.monotonic() - started
        kept = bool(config_hash)
        self._progress(
            request.service,
            "ready",
            f"{request.service} {'attached' if reused else 'ready'} on {backend.name} "
            f"in {seconds:.2f} s",
        )
        with self._lock:
            self._started[request.key] = server
            if kept:
                self._kept_keys.add(request.key)
            self.records.append(
                StartRecord(
                    request,
                    backend.name,
                    server.endpoint,
                    seconds,
                    tuple(tried),
                    reused=reused,
                    kept=kept,
                    started_by=self.worker_id,
                    warm=server.warm and not reused,
                )
            )
        record = ServerRecord(
            key=request.key,
            service=request.service,
            backend=backend.name,
            endpoint=endpoint_fields(server.endpoint),
            handle=handle_of(server),
            seconds_to_ready=seconds,
            reused=reused,
            kept=kept,
            started_by=self.worker_id,
            started_at=time.time(),
            config_hash=config_hash,
            tried=tuple(tried),
            warm=server.warm and not reused,
        )
        return server, record

    def _may_use_docker(self, request: ServerRequest) -> bool:
        """Whether starting ``request`` may need docker-py: not to attach a kept local
        server, nor a kept container the engine's socket says runs (the attach asks the
        socket too). If the attach fails after all, the start imports docker-py in its
        thread, under the preload's lock (:meth:`_provide`)."""
        choice = self.backend_choice(request)
        if choice not in ("auto", "docker"):
            return False
        if not self.reuse or self.kept is None:
            return True
        old = self.kept.read(self._slot(request))
        if old is None:
            return True
        if old.backend == "local":
            return choice == "docker"
        if old.backend != "docker" or "container_id" not in old.handle:
            return True
        return not _container_runs(str(old.handle["container_id"]))

    def _slot(self, request: ServerRequest) -> str:
        return "slot-" + digest(self.project, request.key)

    def _kept_for_auto(
        self, request: ServerRequest, options: ServerOptions
    ) -> tuple[Backend, RunningServer, str] | None:
        """Under ``auto`` with ``reuse``: the slot's kept server, if it matches and answers.

        Attached before any backend is probed: ``auto`` would otherwise ask Docker
        first (and try to pull a missing image) on every warm start, only to pick the
        same kept server. Anything else (none kept, mismatched, dead) goes the usual way.
        """
        if not self.reuse or self.backend_choice(request) != "auto":
            return None
        assert self.kept is not None
        slot = self._slot(request)
        with self.kept.lock(slot, options.startup_timeout + LOCK_MARGIN):
            old = self.kept.read(slot)
            backend = self.backends.get(old.backend) if old is not None else None
            if old is None or old.endpoint is None or backend is None:
                return None
            if backend.name not in AUTO_ORDER:
                return None
            try:
                config_hash = self.config_hash(request, options, backend)
            except Exception:  # e.g. the binaries are gone: the usual way then
                return None
            server = attach(old)
            matches = old.config_hash == config_hash
            if matches:
                self._attaching(request, backend)
            return (backend, server, config_hash) if matches and _answers(server) else None

    def _kept_or_started(
        self, request: ServerRequest, options: ServerOptions, backend: Backend
    ) -> tuple[RunningServer, bool, str]:
        """Attach the kept server of this slot if its configuration matches and it answers;
        otherwise remove it and keep a new one. Returns (server, reused, config hash)."""
        assert self.kept is not None
        slot = self._slot(request)
        config_hash = self.config_hash(request, options, backend)
        with self.kept.lock(slot, options.startup_timeout + LOCK_MARGIN):
            old = self.kept.read(slot)
            if old is not None and old.endpoint is not None:
                server = attach(old)
                if old.config_hash == config_hash:
                    self._attaching(request, backend)
                if old.config_hash == config_hash and _answers(server):
                    return server, True, config_hash
                _docker_modules(server)
                server.stop()  # dead or mismatched: replaced
            self.kept.forget(slot)
            keep = dataclasses.replace(
                options,
                labels={**options.labels, REUSE_LABEL: config_hash},
                workdir_root=self.kept.servers_dir,
            )
            _docker_modules(backend)
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
                    config_hash=config_hash,
                )
            )
            return started, False, config_hash

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
        request = self.private(request)
        with self._lock:
            future = self._futures.get(request)
        if future is None or not future.done() or future.exception() is not None:
            return None
        return future.result()

    def running(self) -> list[RunningServer]:
        """Every server this process has obtained so far (started or attached), up."""
        with self._lock:
            futures = list(self._futures.values())
        return [f.result() for f in futures if f.done() and f.exception() is None]

    def log_tail(self, request: ServerRequest, lines: int = 40) -> str | None:
        """The tail of the log of the server ``request`` got, if it has one by now."""
        request = self.private(request)
        with self._lock:
            future = self._futures.get(request)
        if future is None or not future.done() or future.exception() is not None:
            return None
        server = future.result()
        if server.endpoint.backend == "url":
            return None
        return server.log_tail(lines)

    def summary(self) -> list[ServerRecord]:
        """Every server of the run (all workers'), for the end-of-session report."""
        if self._final_summary is not None:
            return self._final_summary
        run = self._known_run()
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
        with self._lock:
            futures = list(self._futures.values())
        for future in futures:
            future.exception()  # wait; failures were reported where they happened
        self._executor.shutdown(wait=True)
        self.reaping_done()
        self._final_summary = self.summary()  # before the run directory goes
        with self._lock:
            started, self._started = self._started, {}
        run = self._known_run()
        if run is None:
            for key, server in reversed(started.items()):
                if key not in self._kept_keys:
                    self._stop(server)
            self._finish_backends()
            if self.coordinator and self._runs_root is not None:
                discard_fallback_root(self._runs_root)
            return
        if not self.coordinator:
            self._finish_backends()
            _forget_children(started.values())
            return
        for record in reversed(run.records()):
            if record.endpoint is None or record.kept:
                continue
            server = started.get(record.key) or attach(record)
            self._stop(server)
        self._finish_backends()
        _forget_children(started.values())
        docker_used = any(r.backend == "docker" for r in run.records())
        reaper = Reaper(runs_root=run.path.parent, docker=docker_used)
        self.stop_failures += reaper.reap_session(self.session_id).errors
        if not self.stop_failures:
            run.remove()

    def _finish_backends(self) -> None:
        """Let the backends finish what they do in the background (a warm image being
        built), within a bound: before the run's leftovers are reaped."""
        timeout = 2 * float(self.settings["startup_timeout"]) + 60
        for backend in self.backends.values():
            with contextlib.suppress(Exception):
                backend.finish(timeout)

    def _stop(self, server: RunningServer) -> None:
        try:
            server.stop()
        except Exception as exc:  # every server gets its turn; this one is reported
            endpoint = server.endpoint
            self.stop_failures.append(f"{endpoint.service} ({endpoint.backend}): {exc}")


def _starting(request: ServerRequest, options: ServerOptions, backend: str) -> str:
    """``starting postgres on docker (postgres:17.6)…``: what, how, from what."""
    if backend == "docker":
        what = options.image
    elif backend == "url":
        what = mask_url_password(options.url or "")
    else:
        what = str(options.bin_dir) if options.bin_dir is not None else "binaries on PATH"
    return f"starting {request.service} on {backend} ({what})…"


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


def _docker_modules(backend: Backend | RunningServer) -> None:
    """Import docker-py under the preload's lock before a docker start or stop in a
    server's thread: the main thread no longer preloads it for a kept container that
    runs (:meth:`ServerSet._may_use_docker`), in case its attach fails after all."""
    if isinstance(backend, AttachedContainer) or getattr(backend, "name", "") == "docker":
        preload_docker_modules()


def _container_runs(container_id: str) -> bool:
    """The engine's socket says the container runs (False when absent, stopped or unsure)."""
    attrs = inspected("containers", container_id)
    if not isinstance(attrs, dict):
        return False
    state = attrs.get("State")
    return isinstance(state, dict) and state.get("Status") == "running"


def _forget_children(servers: Iterable[RunningServer]) -> None:
    """Servers that outlive this process (kept, or stopped by the coordinator) are not
    its children to wait for: drop the handles so exit does not warn about them."""
    for server in servers:
        process = getattr(server, "process", None)
        if process is not None and process.poll() is None:
            process.returncode = 0


def _package_version() -> str:
    try:
        return version("pytest-integration-kit")
    except PackageNotFoundError:
        return "unknown"
