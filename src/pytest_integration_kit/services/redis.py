"""Redis."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_integration_kit.errors import BackendUnavailable
from pytest_integration_kit.services.server_settings import options_setting
from pytest_integration_kit.services.spec import (
    ServiceSpec,
    find_executable,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from pytest_integration_kit.backends.local_runner import LocalRunner
    from pytest_integration_kit.services.endpoint import Endpoint
    from pytest_integration_kit.services.launch import Credentials, LocalLaunch
    from pytest_integration_kit.settings import Setting

__all__ = ["RedisSpec"]

#: Directives the kit gives the server itself: integration_redis_options cannot.
RESERVED = ("port", "bind", "requirepass", "dir", "daemonize", "unixsocket", "include")


class RedisSpec(ServiceSpec):
    name = "redis"
    title = "Redis"
    scheme = "redis"
    container_port = 6379
    default_image = "redis:8.2"
    url_schemes = ("redis", "rediss")
    url_example = "redis://:secret@127.0.0.1:6379/0"
    default_user = "default"
    default_database = "0"
    os_user = "redis"
    extra = "redis"
    driver_packages = ("redis",)
    server_only_settings = ("options",)

    def extra_settings(self) -> Sequence[Setting]:
        return (
            options_setting(
                self.name,
                self.title,
                form="--name value (redis.conf directives)",
                name_pattern=r"^[a-z][a-z0-9-]*$",
                reserved=RESERVED,
                example="maxmemory=64mb;maxmemory-policy=allkeys-lru",
                bad_example="maxmemory 64mb",
            ),
        )

    def credentials(self, password: str | None = None) -> Credentials:
        """An empty password (``integration_redis_password =``) means no AUTH at all."""
        credentials = super().credentials(password)
        if not credentials.password:
            from pytest_integration_kit.services.launch import Credentials  # noqa: PLC0415 - a server's

            return Credentials("", "", credentials.database)
        return credentials

    def container_env(self, credentials: Credentials) -> dict[str, str]:
        return {}

    def host_network(self, port: int) -> tuple[dict[str, str], list[str]]:
        return {}, ["--port", str(port), "--bind", "127.0.0.1"]

    def container_command(self, credentials: Credentials) -> list[str]:
        # The official image has no password variable; persistence off for speed.
        auth = ["--requirepass", credentials.password]
        if not credentials.password:
            # No password: protected mode would refuse the bridge network's connections.
            # Reached on 127.0.0.1 only: a port published there, or its --bind there.
            auth = ["--protected-mode", "no"]
        command = ["redis-server", *auth, "--save", "", "--appendonly", "no"]
        for option in self.values.get("options") or ():
            # redis-server joins the words after --name into one directive line.
            command += [f"--{option.name}", *(option.value.split() or [""])]
        return command

    def find_binaries(self, bin_dir: Path | None) -> dict[str, Path]:
        server, searched = find_executable(
            ["redis-server", "valkey-server"],
            bin_dir=bin_dir,
            extra_dirs=[Path("/usr/bin"), Path("/usr/sbin"), Path("/usr/local/bin")],
        )
        if server is None:
            raise BackendUnavailable(
                "no Redis server binary (redis-server) found; looked in "
                + ", ".join(searched)
                + ". Install it (Debian: apt-get install redis-server) or point "
                "integration_redis_bin_dir / INTEGRATION_REDIS_BIN_DIR at its directory."
            )
        return {"server": server}

    def prepare_local(
        self,
        *,
        binaries: dict[str, Path],
        workdir: Path,
        port: int,
        credentials: Credentials,
        runner: LocalRunner,
    ) -> LocalLaunch:
        data = workdir / "data"
        data.mkdir()
        runner.own(data)
        config = workdir / "redis.conf"
        # The password goes in a file readable by the server's user only, not on argv.
        auth = [f"requirepass {_quoted(credentials.password)}"] if credentials.password else []
        runner.write_secret(
            config,
            "\n".join(
                [
                    f"port {port}",
                    "bind 127.0.0.1",
                    "protected-mode yes",
                    "daemonize no",
                    f"dir {data}",
                    'save ""',
                    "appendonly no",
                    *auth,
                    *(f"{o.name} {o.value}" for o in self.values.get("options") or ()),
                    "",
                ]
            ),
        )
        from pytest_integration_kit.services.launch import LocalLaunch  # noqa: PLC0415 - a server's

        return LocalLaunch(command=[str(binaries["server"]), str(config)])

    def probe(self, endpoint: Endpoint, timeout: float) -> str:
        try:
            import redis  # noqa: PLC0415 - drivers are optional extras
        except ImportError:
            raise self.missing_driver("redis") from None
        client = redis.Redis(
            host=endpoint.host,
            port=endpoint.port,
            password=endpoint.password or None,
            db=int(endpoint.database or 0),
            socket_connect_timeout=timeout,
            socket_timeout=timeout,
            # One attempt: the readiness loop retries. redis-py 6+ retries three times
            # with backoff by default, a refused password too (0.9 s to 3.9 s here).
            retry=_no_retry(),
        )
        try:
            client.ping()
            return str(client.info("server").get("redis_version", ""))
        finally:
            client.close()

    def connection_count(self, endpoint: Endpoint, timeout: float) -> int | None:
        """``INFO clients``' ``connected_clients``, this client excluded."""
        import redis  # noqa: PLC0415 - drivers are optional extras

        client = redis.Redis(
            host=endpoint.host,
            port=endpoint.port,
            password=endpoint.password or None,
            socket_connect_timeout=timeout,
            socket_timeout=timeout,
        )
        try:
            return int(client.info("clients")["connected_clients"]) - 1
        finally:
            client.close()


def _no_retry() -> Any:
    """A redis-py ``Retry`` that does not retry."""
    from redis.backoff import NoBackoff  # noqa: PLC0415 - drivers are optional extras
    from redis.retry import Retry  # noqa: PLC0415

    return Retry(NoBackoff(), 0)


def _quoted(text: str) -> str:
    """A redis.conf string: double quotes, backslash and quote escaped."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
