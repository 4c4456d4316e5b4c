"""What the session's servers used during a load block: CPU, memory, connections.

A :class:`ResourceSampler` reads, on a background thread every ``interval`` seconds
(and once at the start and the end of the block), each server's

- CPU time and memory: with psutil for a local server (the server process and all its
  children, finished children included), from the Docker engine's one-shot container
  stats for a docker one — CPU is reported as percent of one core, as ``docker stats``
  does, memory in MB (local: the proportional set size of the process tree; docker:
  the container's usage less its inactive file cache);
- client connections: from the server's own statistics
  (:meth:`~pytest_integration_kit.services.spec.ServiceSpec.connection_count`), not
  counting the sampler's own connection; at the start, every second and at the end.

A server on the url backend runs elsewhere: it is listed with a note, not measured.
Every read is bounded (a few seconds at most); :meth:`ResourceSampler.stop` never waits
longer than its timeout and says so when a read was cut short.

.. versionadded:: 0.1
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from pytest_integration_kit.services.endpoint import Endpoint

__all__ = ["NOT_SAMPLED", "ResourceSampler", "Resources", "ServerUsage", "Target"]

#: Seconds any single read (a Docker stats call, a connection count) may take.
READ_TIMEOUT = 3.0
#: Seconds between two connection counts (besides the first and the last).
COUNT_INTERVAL = 1.0
URL_NOTE = "url backend: the server runs elsewhere, its resources are not measured"


@dataclass(frozen=True)
class ServerUsage:
    """One server's use during the block; a figure is None when it could not be read
    (``note`` says why)."""

    service: str
    backend: str
    samples: int = 0
    #: Mean over the block, in percent of one core.
    cpu_percent: float | None = None
    #: Highest between two consecutive samples.
    cpu_percent_max: float | None = None
    #: Highest memory seen, MB.
    memory_mb: float | None = None
    #: Most client connections seen.
    connections: int | None = None
    note: str = ""


@dataclass(frozen=True)
class Resources:
    """The servers' use during one block; ``note`` says why it is empty when it is."""

    servers: tuple[ServerUsage, ...] = ()
    note: str = ""

    def __getitem__(self, service: str) -> ServerUsage:
        """The usage of the (first) server of ``service``: ``result.resources["postgres"]``."""
        for usage in self.servers:
            if usage.service == service:
                return usage
        raise KeyError(f"no {service} server was sampled; sampled: {self.services()}")

    def services(self) -> list[str]:
        return [usage.service for usage in self.servers]

    def to_json(self) -> dict[str, Any]:
        return {"servers": [asdict(usage) for usage in self.servers], "note": self.note}

    def describe(self) -> str:
        """``postgres local: cpu 35% (max 80%), 41 MB, 9 connections; …``."""
        if not self.servers:
            return self.note or "no servers sampled"
        parts = []
        for u in self.servers:
            figures = []
            if u.cpu_percent is not None:
                figures.append(f"cpu {u.cpu_percent:.0f}% (max {u.cpu_percent_max or 0:.0f}%)")
            if u.memory_mb is not None:
                figures.append(f"{u.memory_mb:.0f} MB")
            if u.connections is not None:
                figures.append(f"{u.connections} connections")
            if u.note:
                figures.append(u.note)
            parts.append(f"{u.service} {u.backend}: " + ", ".join(figures))
        return "; ".join(parts)


NOT_SAMPLED = Resources(note="resources were not sampled")


@dataclass(frozen=True)
class Target:
    """A server to sample: its endpoint and how to reach its process or container
    (``pid`` or ``container_id``), and how to count its connections."""

    endpoint: Endpoint
    handle: dict[str, Any]
    count_connections: Callable[[Endpoint, float], int | None] | None = None


def _memory(proc: Any) -> float:
    """Proportional set size where the OS tells it (shared memory, such as PostgreSQL's
    buffers, counted once over the tree), else resident set size."""
    import psutil  # noqa: PLC0415 - only when sampling

    try:
        return float(getattr(proc.memory_full_info(), "pss", proc.memory_info().rss))
    except psutil.AccessDenied:
        return float(proc.memory_info().rss)


def _process_reading(pid: int) -> tuple[float, float]:
    """CPU seconds (the process tree, waited-for children included) and memory bytes."""
    import psutil  # noqa: PLC0415 - only when sampling

    root = psutil.Process(pid)
    cpu = memory = 0.0
    for proc in (root, *root.children(recursive=True)):
        with contextlib.suppress(psutil.Error):
            times = proc.cpu_times()
            cpu += times.user + times.system + times.children_user + times.children_system
            memory += _memory(proc)
    return cpu, memory


def _container_reading(container: Any) -> tuple[float, float]:
    stats = container.stats(stream=False, one_shot=True)
    cpu = float(stats["cpu_stats"]["cpu_usage"]["total_usage"]) / 1e9
    memory = stats.get("memory_stats") or {}
    inner = memory.get("stats") or {}
    cache = inner.get("inactive_file", inner.get("total_inactive_file", 0))
    return cpu, float(memory.get("usage", 0)) - float(cache)


class _Series:
    """The running figures of one target (bounded: no list of samples is kept)."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.samples = 0
        self.first: tuple[float, float] | None = None  # (wall, cpu seconds)
        self.last: tuple[float, float] | None = None
        self.cpu_max: float | None = None
        self.memory: float | None = None
        self.connections: int | None = None
        self.note = ""
        self.client: Any = None
        self.counted_at: float | None = None
        self.reader: Callable[[], tuple[float, float]] | None = None

    def prepare(self) -> None:
        handle = self.target.handle
        if self.target.endpoint.backend == "url":
            self.note = URL_NOTE
        elif handle.get("pid"):
            pid = int(handle["pid"])
            self.reader = lambda: _process_reading(pid)
        elif handle.get("container_id"):
            try:
                import docker  # noqa: PLC0415 - the docker extra is optional

                self.client = docker.from_env(timeout=READ_TIMEOUT)
                container = self.client.containers.get(str(handle["container_id"]))
                self.reader = lambda: _container_reading(container)
            except Exception as exc:
                self.note = f"docker stats unavailable: {exc}"
        else:
            self.note = "no process or container known for this server"

    def sample(self, *, final: bool = False) -> None:
        """Read CPU and memory; the connections at most every :data:`COUNT_INTERVAL`
        (each count is a new connection to the server, which costs it a little CPU)."""
        if self.target.endpoint.backend == "url":
            return
        now = time.perf_counter()
        if self.reader is not None:
            try:
                cpu, memory = self.reader()
            except Exception as exc:
                self.note = f"could not read: {exc}"
            else:
                if self.last is not None and now > self.last[0]:
                    rate = (cpu - self.last[1]) / (now - self.last[0]) * 100
                    self.cpu_max = rate if self.cpu_max is None else max(self.cpu_max, rate)
                self.first = self.first or (now, cpu)
                self.last = (now, cpu)
                mb = memory / 1e6
                self.memory = mb if self.memory is None else max(self.memory, mb)
                self.samples += 1
        due = self.counted_at is None or now - self.counted_at >= COUNT_INTERVAL
        if self.target.count_connections is not None and (due or final):
            self.counted_at = now
            with contextlib.suppress(Exception):
                count = self.target.count_connections(self.target.endpoint, READ_TIMEOUT)
                if count is not None:
                    self.connections = max(count, self.connections or 0)

    def close(self) -> None:
        if self.client is not None:
            with contextlib.suppress(Exception):
                self.client.close()

    def usage(self) -> ServerUsage:
        cpu = None
        if self.first is not None and self.last is not None and self.last[0] > self.first[0]:
            cpu = (self.last[1] - self.first[1]) / (self.last[0] - self.first[0]) * 100
        return ServerUsage(
            service=self.target.endpoint.service,
            backend=self.target.endpoint.backend,
            samples=self.samples,
            cpu_percent=cpu,
            cpu_percent_max=self.cpu_max if cpu is not None else None,
            memory_mb=self.memory,
            connections=self.connections if self.target.endpoint.backend != "url" else None,
            note=self.note,
        )


class ResourceSampler:
    """Samples ``targets`` on a daemon thread from :meth:`start` to :meth:`stop`."""

    def __init__(
        self, targets: Sequence[Target], *, interval: float = 0.25, timeout: float = 10.0
    ) -> None:
        self.series = [_Series(target) for target in targets]
        self.interval = interval
        self.timeout = timeout
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        """Take the first sample (bounded) and start the thread for the rest."""
        if not self.series:
            return
        self._thread = threading.Thread(
            target=self._run, name="integration-load-sampler", daemon=True
        )
        started = threading.Event()
        self._started = started
        self._thread.start()
        started.wait(self.timeout)

    def _run(self) -> None:
        with self._lock:
            for series in self.series:
                series.prepare()
                series.sample()
        self._started.set()
        while not self._stop.wait(self.interval):
            with self._lock:
                for series in self.series:
                    series.sample()
        with self._lock:
            for series in self.series:
                series.sample(final=True)  # the end of the block
                series.close()

    def stop(self) -> Resources:
        """Take the last sample and return the figures (within ``timeout`` seconds)."""
        if not self.series:
            return Resources(note="no server of the session was running")
        self._stop.set()
        note = ""
        if self._thread is not None:
            self._thread.join(self.timeout)
            if self._thread.is_alive():
                note = f"the last sample did not finish within {self.timeout:g} s"
        if not self._lock.acquire(timeout=1.0):
            return Resources(note=note or "sampling did not finish")
        try:
            return Resources(tuple(series.usage() for series in self.series), note)
        finally:
            self._lock.release()
