"""Generic containers: a service made from an image, a port and a readiness check.

``container_spec("minio", image="minio/minio:latest", port=9000, ready=Http("/minio/health/live"))``
makes a :class:`~pytest_integration_kit.services.spec.ServiceSpec` like any other (the
fixture factory registers it), so it gets settings, a marker, report lines and the
lifecycle. Readiness is one of :class:`Tcp` (the default), :class:`Http`,
:class:`LogLine`, :class:`Command`, or any callable given the endpoint (it raises or
returns False until the server is ready).
"""

from __future__ import annotations

import http.client
import inspect
import re
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Union

from pytest_integration_kit.errors import BackendUnavailable
from pytest_integration_kit.services.launch import Credentials, LocalLaunch
from pytest_integration_kit.services.spec import (
    ServerContext,
    ServiceSpec,
    find_executable,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from pathlib import Path

    from pytest_integration_kit.backends.local_runner import LocalRunner
    from pytest_integration_kit.services.endpoint import Endpoint

__all__ = ["Command", "Http", "LogLine", "Readiness", "Tcp", "container_spec"]


class NotReady(Exception):
    """A readiness check that has not passed yet (polled again until the timeout)."""


@dataclass(frozen=True)
class Tcp:
    """Ready when the published port accepts a TCP connection."""

    def __call__(self, endpoint: Endpoint, timeout: float, server: ServerContext) -> str:
        with socket.create_connection((endpoint.host, endpoint.port), timeout=timeout) as sock:
            # Docker's port proxy accepts before anything listens in the container, then
            # closes at once: a connection still open after a moment is a real one.
            sock.settimeout(min(0.2, timeout))
            try:
                if sock.recv(1, socket.MSG_PEEK) == b"":
                    raise NotReady("the connection was closed at once")
            except TimeoutError:
                pass  # open and quiet: a server waiting for us to speak
            return ""


@dataclass(frozen=True)
class Http:
    """Ready when ``GET path`` answers with ``status`` (one code or several)."""

    path: str = "/"
    status: int | tuple[int, ...] = 200

    def __call__(self, endpoint: Endpoint, timeout: float, server: ServerContext) -> str:
        connection = http.client.HTTPConnection(endpoint.host, endpoint.port, timeout=timeout)
        try:
            connection.request("GET", self.path)
            response = connection.getresponse()
            response.read()
        finally:
            connection.close()
        wanted = (self.status,) if isinstance(self.status, int) else self.status
        if response.status not in wanted:
            raise NotReady(f"GET {self.path} answered {response.status}, not {wanted}")
        return ""


@dataclass(frozen=True)
class LogLine:
    """Ready when the server's log has ``count`` lines matching ``pattern`` (a regex).

    On the url backend there is no log: a TCP connect is checked instead."""

    pattern: str
    count: int = 1

    def __call__(self, endpoint: Endpoint, timeout: float, server: ServerContext) -> str:
        if not server.available:
            return Tcp()(endpoint, timeout, server)
        found = len(re.findall(self.pattern, server.log(), re.M))
        if found < self.count:
            raise NotReady(f"{found} of {self.count} log line(s) matching {self.pattern!r}")
        return ""


@dataclass(frozen=True)
class Command:
    """Ready when ``command`` exits 0 where the server runs (in its container; on this
    host for the local backend). On the url backend a TCP connect is checked instead."""

    command: Sequence[str]

    def __call__(self, endpoint: Endpoint, timeout: float, server: ServerContext) -> str:
        if not server.available:
            return Tcp()(endpoint, timeout, server)
        code, output = server.run(self.command, timeout)
        if code != 0:
            raise NotReady(f"{' '.join(self.command)} exited {code}: {output.strip()[-200:]}")
        return ""


#: What ``ready=`` takes: one of the classes above, or a callable given the endpoint.
Readiness = Union[Tcp, Http, LogLine, Command, "Callable[[Endpoint], Any]"]


class ContainerSpec(ServiceSpec):
    """The spec :func:`container_spec` subclasses: every value from its class attributes."""

    scheme = "tcp"
    env: Mapping[str, str] = {}
    command: Sequence[str] | None = None
    readiness: Readiness = Tcp()
    #: For the local backend: the command to run, ``{port}`` replaced by a free port.
    launch: Sequence[str] | None = None

    def credentials(self, password: str | None = None) -> Credentials:
        # No password contract (env= sets one if the image needs it), unless one is given.
        return Credentials("", password or "", "")

    def container_env(self, credentials: Credentials) -> dict[str, str]:
        return dict(self.env)

    def container_command(self, credentials: Credentials) -> list[str] | None:
        return list(self.command) if self.command is not None else None

    def find_binaries(self, bin_dir: Path | None) -> dict[str, Path]:
        if not self.launch:
            return super().find_binaries(bin_dir)
        found, searched = find_executable([self.launch[0]], bin_dir=bin_dir)
        if found is None:
            raise BackendUnavailable(
                f"{self.title}'s launch command {self.launch[0]!r} was not found in "
                + ", ".join(searched)
                + f"; install it or set integration_{self.name}_bin_dir"
            )
        return {"server": found}

    def prepare_local(
        self,
        *,
        binaries: dict[str, Path],
        workdir: Path,
        port: int,
        credentials: Credentials,
        runner: LocalRunner,
    ) -> LocalLaunch:
        assert self.launch  # find_binaries refused otherwise
        args = [arg.replace("{port}", str(port)) for arg in self.launch[1:]]
        return LocalLaunch([str(binaries["server"]), *args], env=dict(self.env))

    def ready(self, endpoint: Endpoint, timeout: float, server: ServerContext) -> str:
        check = self.readiness
        if isinstance(check, (Tcp, Http, LogLine, Command)):
            check(endpoint, timeout, server)
        elif check(endpoint) is False:
            raise NotReady(f"{check!r} returned False")
        return "ready"

    def probe(self, endpoint: Endpoint, timeout: float) -> str:
        return self.ready(endpoint, timeout, ServerContext())


def container_spec(
    name: str,
    *,
    image: str,
    port: int,
    env: Mapping[str, str] | None = None,
    command: Sequence[str] | None = None,
    ready: Readiness | None = None,
    launch: Sequence[str] | None = None,
    title: str | None = None,
    scheme: str = "tcp",
) -> ContainerSpec:
    """A spec for a server in ``image`` listening on ``port``, ready when ``ready`` says."""
    attributes = {
        "name": name,
        "title": title or name,
        "scheme": scheme,
        "container_port": port,
        "default_image": image,
        "env": dict(env or {}),
        "command": list(command) if command is not None else None,
        # A plain function as a class attribute would become a method: keep it as is.
        "readiness": staticmethod(ready) if inspect.isfunction(ready) else (ready or Tcp()),
        "launch": list(launch) if launch is not None else None,
        "__module__": __name__,
        "__qualname__": f"ContainerSpec[{name}]",
    }
    spec_class = type(f"ContainerSpec_{name}", (ContainerSpec,), attributes)
    return spec_class()  # type: ignore[no-any-return]
