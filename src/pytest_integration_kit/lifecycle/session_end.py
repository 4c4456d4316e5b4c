"""The end of a session: stop the servers a set is responsible for, keep the kept ones.

Alone (no run directory) a set stops what it started. In a run shared by xdist
workers a worker stops nothing: the coordinator stops every server of the run, whoever
started it, then removes whatever a crashed worker may have left half-started, and the
run directory. What could not be stopped (a Docker engine gone) is reported, and the
run directory then stays, so that the next run's reaper finds it.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from pytest_integration_kit.lifecycle.attached import attach
from pytest_integration_kit.lifecycle.reaper import Reaper
from pytest_integration_kit.lifecycle.run import discard_fallback_root

if TYPE_CHECKING:
    from collections.abc import Collection, Iterable
    from pathlib import Path

    from pytest_integration_kit.backends.base import Backend, RunningServer
    from pytest_integration_kit.lifecycle.run import RunDirectory

__all__ = ["end_session"]


def end_session(
    started: dict[str, RunningServer],
    *,
    kept_keys: Collection[str],
    run: RunDirectory | None,
    runs_root: Path | None,
    coordinator: bool,
    session_id: str,
    backends: Collection[Backend],
    finish_timeout: float,
) -> list[str]:
    """Stop what a set is responsible for; what could not be stopped, and why.

    ``started`` is what this process started, by request key, in order; ``kept_keys``
    those of them kept for later runs. ``run`` is the run directory if any process of
    the run made one. The backends get ``finish_timeout`` s to finish what they do in
    the background (a warm image being built) before the run's leftovers are reaped.
    """
    failures: list[str] = []
    if run is None:
        for key, server in reversed(started.items()):
            if key not in kept_keys:
                _stop(server, failures)
        _finish_backends(backends, finish_timeout)
        if coordinator and runs_root is not None:
            discard_fallback_root(runs_root)
        return failures
    if not coordinator:
        _finish_backends(backends, finish_timeout)
        _forget_children(started.values())
        return failures
    for record in reversed(run.records()):
        if record.endpoint is None or record.kept:
            continue
        server = started.get(record.key) or attach(record)
        _stop(server, failures)
    _finish_backends(backends, finish_timeout)
    _forget_children(started.values())
    docker_used = any(r.backend == "docker" for r in run.records())
    reaper = Reaper(runs_root=run.path.parent, docker=docker_used)
    failures += reaper.reap_session(session_id).errors
    if not failures:
        run.remove()
    return failures


def _finish_backends(backends: Iterable[Backend], timeout: float) -> None:
    for backend in backends:
        with contextlib.suppress(Exception):
            backend.finish(timeout)


def _stop(server: RunningServer, failures: list[str]) -> None:
    try:
        server.stop()
    except Exception as exc:  # every server gets its turn; this one is reported
        endpoint = server.endpoint
        failures.append(f"{endpoint.service} ({endpoint.backend}): {exc}")


def _forget_children(servers: Iterable[RunningServer]) -> None:
    """Servers that outlive this process (kept, or stopped by the coordinator) are not
    its children to wait for: drop the handles so exit does not warn about them."""
    for server in servers:
        process = getattr(server, "process", None)
        if process is not None and process.poll() is None:
            process.returncode = 0
