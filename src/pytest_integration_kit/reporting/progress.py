"""Progress lines while servers start and stop, written on the main thread.

Servers start in threads; what they report is queued here and written by the main
thread at safe points (after collection, while a test waits for its server), so lines
never interleave with pytest's own output. On a terminal, image-pull progress rewrites
one line; elsewhere only the first pull line is written.
"""

from __future__ import annotations

import queue
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["Progress"]


class Progress:
    """Collects ``(service, kind, text)`` events from any thread; :meth:`flush` writes them.

    ``kind`` is ``start`` (always written), ``pull`` (rewritten in place on a terminal),
    ``ready`` (written only when ``verbose``: pytest's own lines carry the rest) or
    ``attach`` (a kept server is being probed: never written, nothing to wait for).
    """

    def __init__(
        self,
        write_line: Callable[[str], None],
        rewrite: Callable[[str], None] | None = None,
        *,
        verbose: bool = False,
        enabled: bool = True,
    ) -> None:
        self._write_line = write_line
        self._rewrite = rewrite
        self.verbose = verbose
        self.enabled = enabled
        self._queue: queue.SimpleQueue[tuple[str, str, str]] = queue.SimpleQueue()
        self._main = threading.get_ident()
        self._rewriting = False
        self._pulls_shown: set[str] = set()
        #: Services whose start was announced (or whose start is over).
        self.announced: set[str] = set()

    def event(self, service: str, kind: str, text: str) -> None:
        """Record an event (thread-safe); written at the next :meth:`flush`."""
        self._queue.put((service, kind, text))

    def flush(self) -> None:
        """Write what was recorded (main thread only; elsewhere it does nothing)."""
        if threading.get_ident() != self._main:
            return
        while True:
            try:
                service, kind, text = self._queue.get_nowait()
            except queue.Empty:
                return
            if kind in ("start", "ready", "attach"):
                self.announced.add(service)
            if not self.enabled:
                continue
            if kind == "pull":
                self._pull(service, text)
            elif kind == "start" or (self.verbose and kind == "ready"):
                self._line(text)

    def _pull(self, service: str, text: str) -> None:
        if self._rewrite is not None:
            self._rewrite(text)
            self._rewriting = True
        elif service not in self._pulls_shown:
            self._pulls_shown.add(service)
            self._write_line(text)

    def _line(self, text: str) -> None:
        if self._rewriting:
            self._write_line("")  # end the rewritten line
            self._rewriting = False
        self._write_line(text)
