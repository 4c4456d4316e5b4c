"""The backend interface: how a server comes to exist."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from pytest_integration_kit.services.endpoint import Endpoint
    from pytest_integration_kit.services.spec import ServiceSpec

__all__ = ["Backend", "RunningServer", "ServerOptions", "ServerStopError"]


class ServerStopError(Exception):
    """A server could not be stopped or removed (its Docker engine went away…): it is
    still running. The message names it (a container id, a process)."""


@dataclass(frozen=True)
class ServerOptions:
    """Everything a backend needs to start one server, fully resolved."""

    spec: ServiceSpec
    image: str
    startup_timeout: float
    session_id: str
    url: str | None = field(default=None, repr=False)
    bin_dir: Path | None = None
    #: A fixed port for the local backend; None picks a free one.
    port: int | None = None
    #: Extra labels for containers (owner pid, host, reuse hash…).
    labels: dict[str, str] = field(default_factory=dict)
    #: Where the local backend makes the server's directory; None: the temp dir.
    #: Kept servers (``integration_reuse``) live in the cache dir instead.
    workdir_root: Path | None = None
    #: The cache dir of initialised data directories (warm local start) and of the locks
    #: of warm docker images; None: no warm start (``integration_warm_start`` off).
    warm_dir: Path | None = None
    #: Let testcontainers' Ryuk reap the container too, if its image is present.
    ryuk: bool = False
    #: Docker: connect to the container at its own address where this machine reaches
    #: it, not through docker-proxy (``integration_docker_direct``; see docker_route).
    direct: bool = True
    #: Docker: run a service that can be told its port in this machine's network where
    #: the engine shares it (``integration_docker_host_network``; see
    #: docker_host_network).
    host_network: bool = True
    #: A fixed password (``integration_<service>_password``; "" for none); None: random.
    password: str | None = field(default=None, repr=False)
    #: Told what takes time (``pulling postgres:17.6: 12/80 MB``); called from any thread.
    progress: Callable[[str], None] | None = field(default=None, compare=False, repr=False)


class RunningServer(ABC):
    """A server a backend started (or attached to), until :meth:`stop`."""

    endpoint: Endpoint
    #: Wall seconds from asking the backend to the first successful probe.
    seconds_to_ready: float
    #: Started from a data directory initialised by an earlier start (warm start).
    warm: bool = False

    @abstractmethod
    def stop(self) -> None:
        """Stop the server and remove everything it left (idempotent).

        One already gone is fine; raises :class:`ServerStopError` when it may still run.
        """

    @abstractmethod
    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the server's log, secrets masked."""


class Backend(ABC):
    """Starts servers of any service spec in one particular way."""

    name: str

    @abstractmethod
    def unavailable_reason(self, options: ServerOptions) -> str | None:
        """None when this backend can try to start the server; else why it cannot,
        in words that tell the user how to fix it."""

    @abstractmethod
    def start(self, options: ServerOptions) -> RunningServer:
        """Start the server and return once a protocol round trip succeeded."""

    def finish(self, timeout: float = 600) -> None:  # noqa: B027 - most backends have none
        """End of the session: wait (bounded) for work started in the background."""


def mask(text: str, secret: str) -> str:
    """Replace every occurrence of ``secret`` in ``text`` with ``***``."""
    return text.replace(secret, "***") if secret else text
