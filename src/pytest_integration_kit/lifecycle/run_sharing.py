"""How a server set shares its servers with the other processes of its run (xdist).

Through the run's :class:`~pytest_integration_kit.lifecycle.run.RunDirectory`: the
first process that needs a server takes the request's file lock, starts the server and
records it (a failure too); the others wait on the lock and attach what the record
says, or raise the failure it recorded. The directory is made when the first server is
needed, in a runs root that every process of the run uses (:meth:`RunSharing.share`
hands it to the workers).
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

from pytest_integration_kit.errors import BackendUnavailable, MissingExtra, ServerStartError
from pytest_integration_kit.lifecycle.owner import Owner
from pytest_integration_kit.lifecycle.records import ServerRecord
from pytest_integration_kit.lifecycle.run import RunDirectory, choose_runs_root, runs_root
from pytest_integration_kit.services import spec_for

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from pytest_integration_kit.backends.base import RunningServer
    from pytest_integration_kit.lifecycle.requests import ServerRequest

__all__ = ["RunSharing", "raise_recorded_failure"]


class RunSharing:
    """One process's part in the run directory of its run.

    ``owner`` gives the run's owner (the coordinator's process), made on first need.
    """

    def __init__(
        self,
        session_id: str,
        *,
        owner: Callable[[], Owner],
        coordinator: bool,
        worker_id: str,
        run: RunDirectory | None = None,
        runs_root: Path | None = None,
    ) -> None:
        self.session_id = session_id
        self._owner = owner
        self.coordinator = coordinator
        self.worker_id = worker_id
        #: The run directory, once made (by the first server needed, in any process).
        self.run = run
        #: Where the run directory is (or will be), once chosen.
        self.runs_root = run.path.parent if run is not None else runs_root
        self._lock = threading.Lock()
        #: Things the user should hear about (a refused runs root…), for the summary.
        self.notes: list[str] = []

    def share(self) -> dict[str, Any]:
        """What a worker needs to join this run (JSON-able, for xdist's workerinput).

        Chooses the runs root (all workers must use the same) but makes no run dir.
        """
        return {
            "session": self.session_id,
            "owner": self._owner().labels(),
            "runs_root": str(self.root()),
        }

    def root(self) -> Path:
        """The runs root, chosen now if nobody gave one."""
        with self._lock:
            if self.runs_root is None:
                try:
                    self.runs_root, note = choose_runs_root()
                except OSError:
                    # A temp dir we cannot write to: the first server request says so.
                    self.runs_root, note = runs_root(), None
                if note is not None:
                    self.notes.append(note)
            return self.runs_root

    def directory(self) -> RunDirectory:
        """The run directory, made (or joined) now if this is the first need of it."""
        root = self.root()
        with self._lock:
            if self.run is None:
                try:
                    run = RunDirectory.create(self.session_id, self._owner(), root)
                    if not self.coordinator:
                        run.register_process(self.worker_id, Owner.current())
                except OSError as exc:
                    raise ServerStartError(
                        f"cannot use the directory of this run in {root}: {exc}"
                    ) from None
                self.run = run
            return self.run

    def known(self) -> RunDirectory | None:
        """The run directory if any process of the run made it (without making it)."""
        if self.run is not None:
            return self.run
        if self.runs_root is None:
            return None
        path = self.runs_root / self.session_id
        return RunDirectory(path) if path.is_dir() and not path.is_symlink() else None

    def obtain(
        self,
        request: ServerRequest,
        *,
        backend: str,
        timeout: float,
        start: Callable[[ServerRequest], tuple[RunningServer, ServerRecord]],
        attach: Callable[[ServerRequest, ServerRecord], RunningServer],
    ) -> RunningServer:
        """The server of ``request`` for this run: under the request's lock (waited for
        ``timeout`` s), ``attach`` what another process recorded, or ``start`` it here
        and record it (a failure too, as failing on ``backend``)."""
        run = self.directory()
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
            record = run.read(request.key)
            if record is not None:
                raise_recorded_failure(record)
                return attach(request, record)
            try:
                server, record = start(request)
            except MissingExtra as exc:
                run.write(self._failure(request, backend, "extra", exc))
                raise
            except BackendUnavailable as exc:
                run.write(self._failure(request, backend, "unavailable", exc))
                raise
            except ServerStartError as exc:
                run.write(self._failure(request, backend, "start", exc))
                raise
            run.write(record)
            return server
        finally:
            lock.release()

    def _failure(
        self, request: ServerRequest, backend: str, kind: str, exc: Exception
    ) -> ServerRecord:
        return ServerRecord(
            key=request.key,
            service=request.service,
            backend=backend,
            started_by=self.worker_id,
            started_at=time.time(),
            error_kind=kind,
            error=str(exc),
            tried=getattr(exc, "tried", ()),
        )


def raise_recorded_failure(record: ServerRecord) -> None:
    """Raise what the process that tried to start ``record``'s server met, if it failed:
    every process of the run hears the same reason without trying again."""
    if record.error_kind == "extra":
        raise MissingExtra(record.error or "")
    if record.error_kind == "unavailable":
        raise BackendUnavailable(record.error or "", tried=record.tried)
    if record.error_kind is not None:
        raise ServerStartError(record.error or "")
