"""The lifecycle as a library: ServerSet, run directory and reaper, without pytest glue."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from pytest_integration_kit.backends import default_backends
from pytest_integration_kit.backends.base import Backend, RunningServer, ServerOptions
from pytest_integration_kit.errors import BackendUnavailable
from pytest_integration_kit.lifecycle import Owner, Reaper, RunDirectory, ServerRequest, ServerSet
from pytest_integration_kit.settings import resolve_settings


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


class RecordingBackend(Backend):
    """The real local backend, noting when each start began and ended."""

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.name = inner.name
        self.spans: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def unavailable_reason(self, options: ServerOptions) -> str | None:
        return self.inner.unavailable_reason(options)

    def start(self, options: ServerOptions) -> RunningServer:
        began = time.monotonic()
        server = self.inner.start(options)
        with self._lock:
            self.spans[options.spec.name] = (began, time.monotonic())
        return server


def test_start_all_starts_services_concurrently() -> None:
    settings = resolve_settings(cli={"backend": "local"}, ini={})
    backends = default_backends()
    recording = RecordingBackend(backends["local"])
    backends["local"] = recording
    servers = ServerSet(settings, session_id="settest", backends=backends)
    requests = [ServerRequest("postgres"), ServerRequest("mysql"), ServerRequest("redis")]
    servers.start_all(requests)
    try:
        endpoints = [servers.get(r).endpoint for r in requests]
        assert all(_accepts(e.host, e.port) for e in endpoints)
        # Every start began before any of them ended: they ran at the same time.
        spans = recording.spans.values()
        assert max(b for b, _ in spans) < min(e for _, e in spans)
    finally:
        servers.stop_all()
    assert not any(_accepts(e.host, e.port) for e in endpoints)


def test_a_worker_attaches_and_only_the_coordinator_stops() -> None:
    settings = resolve_settings(cli={"backend": "local"}, ini={})
    coordinator = ServerSet.for_process(
        settings, backends=default_backends(), session_id="settest2"
    )
    worker = ServerSet.for_process(
        settings,
        backends=default_backends(),
        session_id="ignored",
        shared=coordinator.share(),
        worker_id="gw0",
    )
    assert worker.session_id == coordinator.session_id
    assert worker.owner == coordinator.owner
    request = ServerRequest("redis")
    started = worker.get(request)  # the worker is first: it starts it
    attached = coordinator.get(request)  # the coordinator finds it in the run dir
    assert attached.endpoint == started.endpoint
    (record,) = coordinator.summary()
    assert record.started_by == "gw0"
    worker.stop_all()
    assert _accepts(started.endpoint.host, started.endpoint.port)
    coordinator.stop_all()
    assert not _accepts(started.endpoint.host, started.endpoint.port)
    assert coordinator.run is not None
    assert not coordinator.run.path.exists()


def test_a_failure_is_recorded_once_for_the_whole_run() -> None:
    settings = resolve_settings(cli={"backend": "url"}, ini={})
    coordinator = ServerSet.for_process(settings, backends=default_backends(), session_id="s3")
    worker = ServerSet.for_process(
        settings, backends=default_backends(), session_id="s3", shared=coordinator.share()
    )
    request = ServerRequest("postgres")
    with pytest.raises(BackendUnavailable) as first:
        worker.get(request)
    assert isinstance(worker.run, RunDirectory)  # made by the first process needing it
    (record,) = worker.run.records()
    assert record.error_kind == "unavailable"
    with pytest.raises(BackendUnavailable) as second:
        coordinator.get(request)
    assert str(second.value) == str(first.value)
    worker.stop_all()
    coordinator.stop_all()


def test_reaper_judges_run_dirs_by_their_owner(tmp_path: Path) -> None:
    finished = subprocess.Popen(["true"])
    finished.wait()
    me = Owner.current()
    live = RunDirectory.create("live", me, root=tmp_path)
    dead = RunDirectory.create("dead", Owner(finished.pid, me.host, ""), root=tmp_path)
    elsewhere = RunDirectory.create(
        "elsewhere", Owner(finished.pid, "other-host", ""), root=tmp_path
    )
    fresh = RunDirectory(tmp_path / "fresh")
    fresh.path.mkdir()
    old = RunDirectory(tmp_path / "old")
    old.path.mkdir()
    two_days_ago = time.time() - 2 * 86400
    os.utime(old.path, (two_days_ago, two_days_ago))

    report = Reaper(runs_root=tmp_path, docker=False).reap_dead()

    assert sorted(report.runs) == ["dead", "old"]
    assert live.path.exists()
    assert elsewhere.path.exists()  # another host's owner is never judged from here
    assert fresh.path.exists()  # no owner yet: maybe being created right now
    assert not dead.path.exists()
    assert not old.path.exists()
