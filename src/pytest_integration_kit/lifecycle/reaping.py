"""The reaper's pass in the background, started before any server is needed.

Every run removes what dead sessions left behind, whether it needs a server or not.
The pass runs in its own thread, which imports the reaper itself: a run that needs no
server pays the import there, next to its collection, and never makes a ServerSet.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from pytest_integration_kit.services import REGISTRY

if TYPE_CHECKING:
    from pathlib import Path

    from pytest_integration_kit.lifecycle.reaper import ReapReport
    from pytest_integration_kit.settings import Settings

__all__ = ["WAIT_SECONDS", "BackgroundReap", "reaper_needs_docker"]

#: How long the end of a session waits for the pass (its engine and process queries
#: are bounded each); past it the pass is left to its daemon thread, and said.
WAIT_SECONDS = 60.0

log = logging.getLogger(__name__)


def reaper_needs_docker(settings: Settings) -> bool:
    """Whether any service may be on docker in this run (else the engine is not asked)."""
    return any(str(settings[f"{name}_backend"]) in ("auto", "docker") for name in REGISTRY.names())


class BackgroundReap:
    """One pass of :meth:`Reaper.reap_dead` in a daemon thread; :meth:`done` waits for it."""

    def __init__(self, *, runs_root: Path | None, docker: bool) -> None:
        self._runs_root = runs_root
        self._docker = docker
        self._report: ReapReport | None = None
        self._thread = threading.Thread(target=self._reap, name="integration-reaper", daemon=True)

    @classmethod
    def start(cls, *, runs_root: Path | None, docker: bool) -> BackgroundReap:
        """Begin the pass now. ``runs_root`` None: every safe runs root of this user."""
        reap = cls(runs_root=runs_root, docker=docker)
        reap._thread.start()
        return reap

    def _reap(self) -> None:
        # Imported in this thread: the reaper and what it asks the engine with.
        from pytest_integration_kit.lifecycle.reaper import Reaper  # noqa: PLC0415

        self._report = Reaper(runs_root=self._runs_root, docker=self._docker).reap_dead()

    def done(self, timeout: float = WAIT_SECONDS) -> ReapReport:
        """Wait for the pass, at most ``timeout`` seconds; what it removed (nothing when
        it failed, its thread said why, or it did not end in time)."""
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning(
                "the reaper's pass over dead sessions did not end within %g s; "
                "the session ends without it (the next run reaps again)",
                timeout,
            )
            return self._empty()
        return self._report if self._report is not None else self._empty()

    @staticmethod
    def _empty() -> ReapReport:
        from pytest_integration_kit.lifecycle.reaper import ReapReport  # noqa: PLC0415

        return ReapReport()
