"""Compose environments: a user's ``docker-compose.yml`` brought up for a session.

Runs the Compose CLI found here: the Docker CLI plugin (``docker compose``, v2) when
present, else Debian's ``docker-compose`` (1.29, packaged in bookworm; Compose v2 is not
in Debian 12 and no well-kept registry package ships it). Every container gets the
kit's session and owner labels (through an override file), so the reaper removes the
containers of a run that died like any other. Readiness: a service with a healthcheck
must report ``healthy``; one without must be running and accept a connection that stays
open on each published port. Nothing here imports pytest.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_integration_kit.backends.docker import LABEL_PREFIX
from pytest_integration_kit.errors import BackendUnavailable, ServerNotReady, ServerStartError

__all__ = ["ComposeEnvironment", "Published", "compose_command"]

#: Seconds between two looks at the containers' states.
POLL = 0.25


@dataclass(frozen=True)
class Published:
    """Where a service's container port is reachable from here."""

    host: str
    port: int

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def compose_command() -> list[str]:
    """The Compose CLI: ``docker compose`` (v2 plugin) or ``docker-compose``."""
    docker = shutil.which("docker")
    if docker is not None:
        probe = subprocess.run(
            [docker, "compose", "version"], capture_output=True, timeout=30, check=False
        )
        if probe.returncode == 0:
            return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    if legacy is not None:
        return [legacy]
    raise BackendUnavailable(
        "no Compose CLI found: install the Docker CLI plugin (docker compose) or "
        "Debian's docker-compose (apt-get install docker-compose)"
    )


class ComposeEnvironment:
    """One Compose project of a session: :meth:`up`, :meth:`endpoint`, :meth:`down`."""

    def __init__(
        self,
        compose_file: Path,
        *,
        project: str,
        labels: dict[str, str],
        services: tuple[str, ...] = (),
        startup_timeout: float = 120.0,
        identity: tuple[str, ...] = (),
    ) -> None:
        self.compose_file = compose_file.resolve()
        if not self.compose_file.is_file():
            raise ServerStartError(f"compose file {self.compose_file} does not exist")
        self.project = project
        self.labels = labels
        #: The labels that make a running project this one, for :meth:`attach`.
        self.identity = identity
        self.services = services
        self.startup_timeout = startup_timeout
        self._tmp = Path(tempfile.mkdtemp(prefix="pik-compose-"))
        self._base = compose_command()
        self.seconds_to_ready = 0.0
        #: True when :meth:`attach` found the project up (another worker's, or kept).
        self.attached = False

    # -- the CLI ----------------------------------------------------------------------

    def _run(self, *args: str, timeout: float = 300) -> str:
        command = [
            *self._base,
            "--project-name",
            self.project,
            "--project-directory",
            str(self.compose_file.parent),
            "-f",
            str(self.compose_file),
            "-f",
            str(self._tmp / "labels.yml"),
            *args,
        ]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
        if done.returncode != 0:
            output = "\n".join((done.stdout + done.stderr).strip().splitlines()[-30:])
            raise ServerStartError(f"{' '.join(command[len(self._base) :])} failed:\n{output}")
        return done.stdout

    def _version(self) -> dict[str, str]:
        # Compose v1 refuses to merge files of different format versions.
        found = re.search(
            r"^version:\s*['\"]?([\d.]+)", self.compose_file.read_text(), re.MULTILINE
        )
        return {"version": found[1]} if found else {}

    def _service_names(self) -> list[str]:
        self._tmp.mkdir(mode=0o700, exist_ok=True)  # again after a down()
        (self._tmp / "labels.yml").write_text(json.dumps({**self._version(), "services": {}}))
        names = self._run("config", "--services").split()
        return [n for n in names if not self.services or n in self.services]

    def _write_labels(self, names: list[str]) -> None:
        # JSON is YAML: the override gives every service the kit's labels.
        labels = {**self.labels, f"{LABEL_PREFIX}.compose": self.project}
        document = {
            **self._version(),
            "services": {name: {"labels": labels} for name in names},
            # The project's own network, reaped with its containers.
            "networks": {"default": {"labels": labels}},
        }
        (self._tmp / "labels.yml").write_text(json.dumps(document))

    # -- lifecycle --------------------------------------------------------------------

    def attach(self) -> bool:
        """Use the project if it is already up: every chosen service has a running
        container carrying this environment's :attr:`identity` labels (a kept project's
        reuse label holds the hash of its file, so a changed file never attaches).

        Waits for them to be ready, as :meth:`up` does; False (nothing waited for) when
        they are not all there.
        """
        started = time.monotonic()
        names = self._service_names()
        self._write_labels(names)
        running = {
            container.labels.get("com.docker.compose.service", "")
            for container in self._containers()
            if container.status == "running"
            and all(container.labels.get(k) == self.labels.get(k) for k in self.identity)
        }
        if not set(names) <= running:
            return False
        self._wait(names, started + self.startup_timeout)
        self.seconds_to_ready = time.monotonic() - started
        self.attached = True
        return True

    def exists(self) -> bool:
        """Whether any container of the project is there (running or not, any labels)."""
        return bool(self._containers())

    def up(self) -> ComposeEnvironment:
        started = time.monotonic()
        names = self._service_names()
        self._write_labels(names)
        try:
            self._run("up", "-d", "--no-build", *self.services, timeout=self.startup_timeout + 60)
            self._wait(names, started + self.startup_timeout)
        except BaseException:
            self.down()
            raise
        self.seconds_to_ready = time.monotonic() - started
        return self

    def _containers(self) -> list[Any]:
        import docker  # noqa: PLC0415 - the docker extra is optional

        client = docker.from_env()
        return list(
            client.containers.list(
                all=True, filters={"label": f"com.docker.compose.project={self.project}"}
            )
        )

    def _wait(self, names: list[str], deadline: float) -> None:
        pending = set(names)
        reasons: dict[str, str] = {}
        while pending:
            for container in self._containers():
                service = container.labels.get("com.docker.compose.service", "")
                if service not in pending:
                    continue
                state = container.attrs["State"]
                health = (state.get("Health") or {}).get("Status")
                if state.get("Status") in ("exited", "dead"):
                    raise ServerStartError(
                        f"compose service {service} exited (code {state.get('ExitCode')}):\n"
                        + self.logs(service)
                    )
                if health == "unhealthy":
                    raise ServerStartError(
                        f"compose service {service} is unhealthy:\n" + self.logs(service)
                    )
                if health is not None:
                    ready = health == "healthy"
                    reasons[service] = f"health {health}"
                else:
                    ready, reasons[service] = self._accepts(container)
                if ready:
                    pending.discard(service)
            if not pending:
                return
            if time.monotonic() > deadline:
                detail = "; ".join(f"{s}: {reasons.get(s, 'no container')}" for s in pending)
                logs = "\n".join(self.logs(s) for s in sorted(pending))
                raise ServerNotReady(
                    f"compose services not ready after {self.startup_timeout:g} s "
                    f"({detail}).\n{logs}"
                )
            time.sleep(POLL)

    def _accepts(self, container: Any) -> tuple[bool, str]:
        """Running, and each published port holds a connection open (Docker's proxy
        accepts before anything listens, then hangs up)."""
        if container.attrs["State"].get("Status") != "running":
            return False, "not running yet"
        for bindings in (container.attrs["NetworkSettings"].get("Ports") or {}).values():
            for binding in bindings or []:
                port = int(binding["HostPort"])
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                        sock.settimeout(0.2)
                        with contextlib.suppress(TimeoutError, socket.timeout):
                            if sock.recv(1) == b"":
                                return False, f"port {port} hung up"
                except OSError as exc:
                    return False, f"port {port}: {exc}"
        return True, "accepts connections"

    def endpoint(self, service: str, port: int) -> Published:
        """Where ``service``'s container port ``port`` is published on this host."""
        for container in self._containers():
            if container.labels.get("com.docker.compose.service") != service:
                continue
            container.reload()
            bindings = (container.attrs["NetworkSettings"].get("Ports") or {}).get(f"{port}/tcp")
            if bindings:
                host = bindings[0]["HostIp"]
                if host in ("", "0.0.0.0"):  # noqa: S104 - published on every interface
                    host = "127.0.0.1"
                return Published(host, int(bindings[0]["HostPort"]))
            raise ValueError(f"compose service {service!r} publishes no port {port}")
        raise ValueError(f"no compose service {service!r} in project {self.project}")

    def failing_services(self) -> list[str]:
        """The services whose container exited, died or turned unhealthy (or is gone)."""
        states: dict[str, bool] = {}
        for container in self._containers():
            service = container.labels.get("com.docker.compose.service", "")
            state = container.attrs["State"]
            health = (state.get("Health") or {}).get("Status")
            states[service] = state.get("Status") == "running" and health != "unhealthy"
        names = self.services or tuple(states)
        return sorted(name for name in names if not states.get(name, False))

    def service_names(self) -> list[str]:
        """The services of the project (the chosen ones), as its containers name them."""
        found = {c.labels.get("com.docker.compose.service", "") for c in self._containers()}
        return sorted(n for n in found if n and (not self.services or n in self.services))

    def logs(self, service: str, lines: int = 40) -> str:
        """The tail of a service's log (for failure reports)."""
        try:
            return self._run("logs", "--no-color", "--tail", str(lines), service, timeout=60)
        except (ServerStartError, subprocess.SubprocessError) as exc:
            return f"(no log of {service}: {exc})"

    def down(self) -> None:
        """Remove the project's containers, networks and anonymous volumes."""
        try:
            self._run("down", "-v", "--remove-orphans", "--timeout", "5", timeout=120)
        finally:
            self.close()

    def close(self) -> None:
        """Forget the project, leaving it up (for another process, or a later run)."""
        shutil.rmtree(self._tmp, ignore_errors=True)
