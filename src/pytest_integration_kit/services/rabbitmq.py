"""RabbitMQ: registered through the entry point group like a third-party service.

AMQP readiness is a real AMQP 0-9-1 handshake (pika). Per-worker vhosts are made
through the management API (``rabbitmq_management``, enabled by the spec on every
backend it starts), whose port is the endpoint's ``ports["management"]``.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

from pytest_integration_kit.errors import BackendUnavailable
from pytest_integration_kit.services.spec import (
    ServerContext,
    ServiceSpec,
    find_executable,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

    from pytest_integration_kit.backends.local_runner import LocalRunner
    from pytest_integration_kit.services.endpoint import Endpoint
    from pytest_integration_kit.services.launch import Credentials, LocalLaunch

__all__ = ["MANAGEMENT_PORT", "RabbitMQSpec"]

#: The management API's port in the container (and on a server the url backend names,
#: unless its URL says ``?management_port=…``).
MANAGEMENT_PORT = 15672

#: The local launch: Erlang's port mapper (epmd) on a port of this server's own, in the
#: foreground and in the server's process group, so that stopping or reaping the server
#: takes it too (an epmd RabbitMQ started itself would daemonise and outlive the run);
#: then the broker, which finds that epmd through ERL_EPMD_PORT. A TERM stops both: the
#: broker at once (test data need not survive; a graceful stop takes seconds).
LAUNCH = r"""
"$1" -port "$ERL_EPMD_PORT" -address 127.0.0.1 & epmd=$!
i=0
until "$1" -port "$ERL_EPMD_PORT" -names >/dev/null 2>&1; do
    i=$((i + 1)); [ "$i" -lt 100 ] || { echo "epmd did not start" >&2; kill "$epmd"; exit 1; }
    sleep 0.05
done
"$2" & broker=$!
trap 'kill -KILL "$broker" 2>/dev/null' TERM INT
wait "$broker"; wait "$broker"; status=$?
kill "$epmd" 2>/dev/null; wait "$epmd"
exit "$status"
"""


class _PikaQuiet:
    """pika logs every failed connection attempt at ERROR: while a readiness probe
    polls a server still starting, that filled failure reports with dozens of them.
    Its loggers are raised to CRITICAL while any thread probes, then restored."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._depth = 0
        self._level = logging.NOTSET

    @contextlib.contextmanager
    def __call__(self) -> Iterator[None]:
        logger = logging.getLogger("pika")
        with self._lock:
            if self._depth == 0:
                self._level = logger.level
                logger.setLevel(logging.CRITICAL)
            self._depth += 1
        try:
            yield
        finally:
            with self._lock:
                self._depth -= 1
                if self._depth == 0:
                    logger.setLevel(self._level)


_pika_quiet = _PikaQuiet()


class RabbitMQSpec(ServiceSpec):
    """RabbitMQ (AMQP 0-9-1): ``rabbitmq_server``, ``amqp://user:pw@host:port/%2F``."""

    name = "rabbitmq"
    title = "RabbitMQ"
    scheme = "amqp"
    container_port = 5672
    extra_ports = {"management": MANAGEMENT_PORT}  # noqa: RUF012 - read only
    default_image = "rabbitmq:3"
    url_schemes = ("amqp", "amqps")
    url_example = "amqp://app:secret@127.0.0.1:5672/%2F?management_port=15672"
    # Not "guest": RabbitMQ lets guest in from loopback only (not through Docker's proxy).
    default_user = "integration"
    default_database = "/"
    os_user = "rabbitmq"
    extra = "rabbitmq"
    driver_packages = ("pika", "aio_pika", "aiormq")

    def endpoint_from_url(self, url: str) -> Endpoint:
        """``amqp://user:pw@host:port/vhost``; ``?management_port=N`` where the
        management API is not on 15672 (it makes the per-worker vhosts)."""
        import dataclasses  # noqa: PLC0415

        endpoint = super().endpoint_from_url(url)
        query = parse_qs(urlsplit(url).query)
        port = query.get("management_port", [str(MANAGEMENT_PORT)])[0]
        if not port.isdigit():
            raise ValueError(f"management_port={port!r} in the RabbitMQ URL is not a port")
        return dataclasses.replace(endpoint, ports={"management": int(port)})

    # -- docker: the official image's contract ----------------------------------------

    def container_env(self, credentials: Credentials) -> dict[str, str]:
        return {
            "RABBITMQ_DEFAULT_USER": credentials.user,
            "RABBITMQ_DEFAULT_PASS": credentials.password,
            "RABBITMQ_DEFAULT_VHOST": credentials.database,
            # Read by RabbitMQ itself (3.8+): no rabbitmq-plugins run, no config file.
            "RABBITMQ_ENABLED_PLUGINS": "rabbitmq_management",
        }

    def container_tmpfs(self) -> dict[str, str]:
        # Mnesia and the message stores: test data need not survive.
        return {"/var/lib/rabbitmq": "rw"}

    # -- local: Debian's (or Homebrew's) binaries -------------------------------------

    def find_binaries(self, bin_dir: Path | None) -> dict[str, Path]:
        # Debian's /usr/sbin/rabbitmq-server switches to the rabbitmq user itself and
        # ignores our environment: the real script lives in /usr/lib/rabbitmq/bin.
        extra = [Path("/usr/lib/rabbitmq/bin"), Path("/usr/local/sbin"), Path("/usr/sbin")]
        server, searched = find_executable(
            ["rabbitmq-server"],
            bin_dir=bin_dir if bin_dir is not None else extra[0],
        )
        if server is None and bin_dir is None:
            server, more = find_executable(["rabbitmq-server"], bin_dir=None, extra_dirs=extra)
            searched += more
        epmd, _ = find_executable(
            ["epmd"], bin_dir=None, extra_dirs=[Path("/usr/lib/erlang/bin"), Path("/usr/bin")]
        )
        if server is None or epmd is None:
            missing = "rabbitmq-server" if server is None else "epmd (Erlang)"
            raise BackendUnavailable(
                f"no RabbitMQ server binary ({missing}) found; looked in "
                + ", ".join(searched)
                + ". Install it (Debian: apt-get install rabbitmq-server) or point "
                "integration_rabbitmq_bin_dir / INTEGRATION_RABBITMQ_BIN_DIR at the directory "
                "holding rabbitmq-server."
            )
        return {"server": server, "epmd": epmd}

    def prepare_local(
        self,
        *,
        binaries: dict[str, Path],
        workdir: Path,
        port: int,
        credentials: Credentials,
        runner: LocalRunner,
    ) -> LocalLaunch:
        management = runner.ports["management"]
        for sub in ("mnesia", "log"):
            (workdir / sub).mkdir()
            runner.own(workdir / sub)
        config = workdir / "rabbitmq.conf"
        # The password goes in a file only the server's user reads, never on argv.
        runner.write_secret(
            config,
            "\n".join(
                [
                    f"listeners.tcp.1 = 127.0.0.1:{port}",
                    "management.tcp.ip = 127.0.0.1",
                    f"management.tcp.port = {management}",
                    f"default_user = {credentials.user}",
                    f"default_pass = {credentials.password}",
                    f"default_vhost = {credentials.database}",
                    "loopback_users = none",
                    "log.console = true",
                    "log.console.level = warning",
                    "log.file = false",
                    "",
                ]
            ),
        )
        # The Erlang cookie guards the distribution port: random, private.
        import secrets  # noqa: PLC0415 - only a server started here needs one

        runner.write_secret(workdir / ".erlang.cookie", secrets.token_hex(16))
        dist_port = _free_port(port, management)
        epmd_port = _free_port(port, management, dist_port)
        env = {
            "HOME": str(workdir),
            # A random node name and ports of its own: two sessions never meet.
            "RABBITMQ_NODENAME": f"pik{secrets.token_hex(6)}@localhost",
            "RABBITMQ_DIST_PORT": str(dist_port),
            "ERL_EPMD_PORT": str(epmd_port),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
            "RABBITMQ_CONFIG_FILE": str(config),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(workdir / "advanced.config"),
            "RABBITMQ_CONF_ENV_FILE": str(workdir / "rabbitmq-env.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(workdir / "enabled_plugins"),
            "RABBITMQ_ENABLED_PLUGINS": "rabbitmq_management",
            "RABBITMQ_MNESIA_BASE": str(workdir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(workdir / "log"),
            "RABBITMQ_PID_FILE": str(workdir / "rabbitmq.pid"),
            # The script then execs the VM instead of wrapping it in a shell whose TERM
            # handler boots a second VM to run `rabbitmqctl stop`.
            "RUNNING_UNDER_SYSTEMD": "true",
        }
        command = ["/bin/sh", "-c", LAUNCH, "rabbitmq", str(binaries["epmd"])]
        from pytest_integration_kit.services.launch import LocalLaunch  # noqa: PLC0415 - a server's

        return LocalLaunch(command=[*command, str(binaries["server"])], env=env)

    # -- protocol ---------------------------------------------------------------------

    def ready(self, endpoint: Endpoint, timeout: float, server: ServerContext) -> str:
        """The AMQP handshake, then (where the kit started the server) the management
        API the per-worker vhosts are made through."""
        version = self.probe(endpoint, timeout)
        if server.available:
            from pytest_integration_kit.isolation.rabbitmq import Management  # noqa: PLC0415

            Management(endpoint, timeout=timeout).get("/api/overview")
        return version

    def probe(self, endpoint: Endpoint, timeout: float) -> str:
        try:
            import pika  # noqa: PLC0415 - drivers are optional extras
        except ImportError:
            raise self.missing_driver("pika") from None
        parameters = pika.ConnectionParameters(
            host=endpoint.host,
            port=endpoint.port,
            virtual_host=endpoint.database or "/",
            credentials=pika.PlainCredentials(endpoint.user, endpoint.password),
            socket_timeout=timeout,
            stack_timeout=timeout,
            blocked_connection_timeout=timeout,
            connection_attempts=1,
        )
        with _pika_quiet():  # a refused attempt is the probe's answer, not an error to log
            connection = pika.BlockingConnection(parameters)
        try:
            properties = connection._impl.server_properties or {}
            version = properties.get("version", b"")
            return version.decode() if isinstance(version, bytes) else str(version)
        finally:
            connection.close()


def _free_port(*taken: int) -> int:
    import socket  # noqa: PLC0415

    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in taken:
            return port
