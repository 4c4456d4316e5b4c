"""Who owns what a run made on a server, and for how long without hearing from it.

Everything the kit makes on a server — a worker or clone database, a Redis db index, a
RabbitMQ vhost — carries its owner: the host, the process id and, for a shared server,
a *lease*: the server-clock time until which it stays the owner's even if nothing is
heard from it. A live run renews its leases every third of their length from a daemon
thread (:class:`LeaseRenewer`), so a run of any length keeps what it made.

Whether something is abandoned (:func:`abandoned`) depends on who asks. On the owner's
own host a dead process id settles it at once, and so does a live one that started at
another time than the owner did: process ids are reused (32,768 of them by default, gone
round in minutes on a busy CI machine), and a killed run's database must not live on
because some later process got its worker's id. From another host process ids mean
nothing, so only an expired lease does: that is how CI jobs on many machines share one
server and still clean up after a job that was killed. "Host" is the host name *and*
the process-id namespace, so two containers with the same host name are two hosts.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
import socket
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from pytest_integration_kit.lifecycle.owner import process_start

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "DEFAULT_LEASE_SECONDS",
    "LeaseClock",
    "LeaseRenewer",
    "OwnerLabel",
    "Renewable",
    "abandoned",
    "host_identity",
    "owner_label",
    "parse_owner",
]

#: How long what a run made stays its own without a renewal (``integration_lease_seconds``).
DEFAULT_LEASE_SECONDS = 600.0

_LABEL = re.compile(
    r"pytest-integration-kit host=(?P<host>\S+) pid=(?P<pid>\d+)"
    r"(?: until=(?P<until>\d+(?:\.\d+)?))?"
    r"(?: started=(?P<started>\d+(?:\.\d+)?))?"
)

log = logging.getLogger(__name__)


@functools.cache
def host_identity() -> str:
    """``<host name>/<pid namespace>``: where process ids can be checked.

    The namespace part tells apart containers (or CI runners) that share a host name;
    it is left out where there is no ``/proc`` (the host name is all there is).
    """
    name = socket.gethostname()
    try:
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return name
    return f"{name}/{namespace:x}"


@dataclass(frozen=True)
class OwnerLabel:
    """What a label says of its maker: host, process and lease end (server clock)."""

    host: str
    pid: int
    #: Seconds since the epoch on the server's clock; None in labels older than leases.
    until: float | None = None
    #: When the process started (its host's clock, 10 ms): tells a reused pid apart.
    #: None in labels from before it was written.
    started: str | None = None

    def on_this_host(self) -> bool:
        here = host_identity()
        if "/" not in self.host:  # written before labels named the namespace
            return self.host == here.split("/", 1)[0]
        return self.host == here


def owner_label(
    host: str | None = None,
    pid: int | None = None,
    *,
    until: float | None = None,
    started: str | None = None,
) -> str:
    """The label of something this process made: host, process id, lease end and, for
    this process, when it started."""
    if pid is None:
        pid = os.getpid()
        started = _own_start(pid)
    label = f"pytest-integration-kit host={host or host_identity()} pid={pid}"
    if until is not None:
        label += f" until={until:.0f}"
    return f"{label} started={started}" if started else label


def parse_owner(label: str) -> OwnerLabel | None:
    """The :class:`OwnerLabel` a label names; None for anything else (never the kit's)."""
    match = _LABEL.fullmatch(label.strip())
    if match is None:
        return None
    until = match["until"]
    return OwnerLabel(
        match["host"], int(match["pid"]), float(until) if until else None, match["started"]
    )


@functools.cache
def _own_start(pid: int) -> str:
    """This process's start, read once (keyed by pid: a fork reads its own)."""
    return process_start(pid)


def process_alive(pid: int) -> bool:
    """Whether ``pid`` is a live process here (someone else's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def abandoned(owner: OwnerLabel, *, now: float) -> bool:
    """Whether what ``owner`` made may be dropped by this process, at server time ``now``.

    On the owner's host: its process is gone. From elsewhere: its lease ran out (a label
    without a lease, from a kit before leases, is never dropped from another host).
    """
    if owner.on_this_host():
        if not process_alive(owner.pid):
            return True
        # Alive: the owner, or a later process that got its id.
        return owner.started is not None and process_start(owner.pid) not in ("", owner.started)
    return owner.until is not None and owner.until < now


class Renewable(Protocol):
    """Something holding leases: :meth:`renew` pushes their end ``lease_seconds`` ahead."""

    def renew(self) -> None: ...


class LeaseRenewer:
    """A daemon thread renewing every held lease each third of ``lease_seconds``.

    A renewal that fails (the server restarting, a lock held too long) is logged and
    tried again next round: a lease is three rounds long, so one miss loses nothing.
    """

    def __init__(self, lease_seconds: float = DEFAULT_LEASE_SECONDS) -> None:
        self.lease_seconds = lease_seconds
        self.interval = max(lease_seconds / 3, 0.2)
        self._held: list[Renewable] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def hold(self, *items: Renewable) -> None:
        """Renew ``items`` from now on; the thread starts with the first one."""
        with self._lock:
            self._held.extend(i for i in items if all(i is not h for h in self._held))
            if self._thread is None and self._held and not self._stop.is_set():
                self._thread = threading.Thread(
                    target=self._run, name="integration-leases", daemon=True
                )
                self._thread.start()

    def renew_now(self) -> None:
        """One round: every held lease renewed (failures logged, not raised)."""
        with self._lock:
            held = list(self._held)
        for item in held:
            try:
                item.renew()
            except Exception as exc:
                log.warning("renewing the lease of %r failed: %s", item, exc)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.renew_now()

    def stop(self) -> None:
        """End the renewals (the leases then run out by themselves); waits a bounded time."""
        self._stop.set()
        thread = self._thread
        if thread is not None:
            with contextlib.suppress(RuntimeError):
                thread.join(timeout=30)


class LeaseClock:
    """Times on one server's clock, where its leases are measured.

    The server is asked once (``read``); later times are the local clock plus the
    difference then seen, so hosts whose clocks disagree still agree on a lease's end.
    """

    def __init__(self, lease_seconds: float = DEFAULT_LEASE_SECONDS) -> None:
        self.lease_seconds = lease_seconds
        self._offset: float | None = None  # server clock - local clock

    def now(self, read: Callable[[], float]) -> float:
        """The server's time; ``read()`` (the server's answer) only the first time."""
        if self._offset is None:
            self._offset = read() - time.time()
        return time.time() + self._offset

    def label(self, read: Callable[[], float]) -> str:
        """This process's label, its lease ending ``lease_seconds`` from now."""
        return owner_label(until=self.now(read) + self.lease_seconds)
