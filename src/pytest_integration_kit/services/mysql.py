"""MySQL and MariaDB."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

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
    from pytest_integration_kit.services.launch import Credentials, LocalLaunch, WarmLaunch
    from pytest_integration_kit.settings import Setting

__all__ = ["MySQLSpec", "pymysql_transport"]

#: Backends that start the server themselves, with the kit's options (no TLS asked for).
_STARTED_HERE = frozenset({"docker", "local"})


def pymysql_transport(endpoint: Endpoint) -> dict[str, bool]:
    """PyMySQL arguments for the kit's own connections to ``endpoint``: no TLS to a
    server the kit started on this machine's loopback, the driver's default elsewhere.

    PyMySQL 1.2+ asks for TLS wherever the server offers it (MySQL 8 does, with the
    certificates it makes itself): every connection then loads the system's CA bundle
    (17-25 ms of CPU here, MariaDB included, which offers none) and, on MySQL 8, makes
    a TLS handshake and encrypts every statement. Bytes between two processes of this
    machine over its loopback gain nothing from it. A URL's server (through the fault
    proxy too) and a remote engine's keep what the driver does.
    """
    from pytest_integration_kit.services.endpoint import LOOPBACK  # noqa: PLC0415 - made when a server starts (issue #11)

    if endpoint.backend in _STARTED_HERE and endpoint.host in LOOPBACK:
        return {"ssl_disabled": True}
    return {}


#: Options both MySQL 8 and MariaDB accept that make test writes, and starts, cheaper.
NON_DURABLE = (
    "--innodb-flush-log-at-trx-commit=0",
    "--sync-binlog=0",
    # A redo log of 8 MB, not 96 (MariaDB) or 100 (MySQL): a new data directory writes
    # all of it, and a container's first write to a warm image's copies all of it out
    # of the image's layer (0.09 s of a warm MariaDB start here).
    "--innodb-log-file-size=8M",
    "--character-set-server=utf8mb4",
    "--collation-server=utf8mb4_unicode_ci",
)

#: Options the kit gives the server itself: integration_mysql_options cannot.
RESERVED = (
    "port",
    "bind_address",
    "socket",
    "datadir",
    "pid_file",
    "init_file",
    "user",
    "skip_networking",
    "defaults_file",
    "no_defaults",
)

#: A start from a warm image runs the server itself, not the image's entrypoint: with
#: the data directory there, all the entrypoint does is run the server with --help to
#: read its configuration and run itself again as the mysql user: 0.25 s of a warm
#: start here. The server drops root itself (--user). An image without the server
#: on its PATH, or without a mysql user, still starts through its entrypoint.
DIRECT_LAUNCH = """\
if id mysql >/dev/null 2>&1; then
    for server in mariadbd mysqld; do
        if command -v "$server" >/dev/null 2>&1; then
            exec "$server" --user=mysql {args}
        fi
    done
fi
exec {entrypoint}
"""

SERVER_DIRS = [Path("/usr/sbin"), Path("/usr/bin"), Path("/usr/local/mysql/bin")]


class MySQLSpec(ServiceSpec):
    # The user is root: isolation creates a database per worker, which needs it.
    name = "mysql"
    title = "MySQL"
    scheme = "mysql+pymysql"
    container_port = 3306
    default_image = "mysql:8.4"
    url_schemes = ("mysql", "mariadb")
    url_example = "mysql://root:secret@127.0.0.1:3306/app"
    group_markers = ("requires_db",)
    default_user = "root"
    default_database = "integration"
    os_user = "mysql"
    extra = "mysql"
    driver_packages = ("pymysql", "MySQLdb", "aiomysql", "asyncmy")
    server_only_settings = ("options",)

    def extra_settings(self) -> Sequence[Setting]:
        return (
            options_setting(
                self.name,
                self.title,
                form="--name=value",
                name_pattern=r"^[A-Za-z][A-Za-z0-9_-]*$",
                reserved=RESERVED,
                example="max_connections=300;max_allowed_packet=64M",
                bad_example="--max_connections=300",
            ),
        )

    def _options(self) -> list[str]:
        return [f"--{option}" for option in self.values.get("options") or ()]

    def container_env(self, credentials: Credentials) -> dict[str, str]:
        return {
            "MYSQL_ROOT_PASSWORD": credentials.password,
            "MYSQL_DATABASE": credentials.database,
            # Loading the zoneinfo into the time zone tables is 40% of a cold start,
            # and a locally started server has no such tables either (named zones
            # need them: see "Time zones" in services.md).
            "MYSQL_INITDB_SKIP_TZINFO": "1",
        }

    def container_command(self, credentials: Credentials) -> list[str]:
        return [*NON_DURABLE, *self._options()]

    def container_tmpfs(self) -> dict[str, str]:
        return {"/var/lib/mysql": "rw"}

    def host_network(self, port: int) -> tuple[dict[str, str], list[str]]:
        # MYSQL_TCP_PORT is the server's default port (MySQL's and MariaDB's). MySQL's
        # X Protocol listens on every address of 33060 unless turned off; ``loose-``
        # keeps MariaDB, which does not know the option, from refusing it.
        return {"MYSQL_TCP_PORT": str(port)}, ["--bind-address=127.0.0.1", "--loose-mysqlx=OFF"]

    # Outside the official images' VOLUME /var/lib/mysql.
    warm_data_dir = "/var/lib/pytest-integration-kit/mysql"
    #: Read by the server before it accepts connections: it sets this session's password.
    WARM_INIT_FILE = "/pytest-integration-kit-init.sql"

    def warm_container(
        self, credentials: Credentials, *, cached: bool
    ) -> tuple[dict[str, str], list[str]]:
        # The entrypoint reads --datadir from the command and skips its set-up when
        # <datadir>/mysql exists (MySQL, MariaDB and the offline test image alike).
        command = [*self.container_command(credentials), f"--datadir={self.warm_data_dir}"]
        if cached:
            command.append(f"--init-file={self.WARM_INIT_FILE}")
        return self.container_env(credentials), command

    def warm_launch(
        self, credentials: Credentials, entrypoint: Sequence[str], command: Sequence[str]
    ) -> WarmLaunch | None:
        # The password needs no step here: the init file (warm_files) sets it.
        from pytest_integration_kit.services.launch import WarmLaunch  # noqa: PLC0415 - made when a server starts (issue #11)

        script = DIRECT_LAUNCH.format(
            args=shlex.join(command), entrypoint=shlex.join([*entrypoint, *command])
        )
        return WarmLaunch(script)

    def warm_files(self, credentials: Credentials) -> dict[str, bytes]:
        password = credentials.password.replace("\\", "\\\\").replace("'", "\\'")
        sql = "".join(
            f"ALTER USER IF EXISTS '{credentials.user}'@'{host}' IDENTIFIED BY '{password}';\n"
            for host in ("localhost", "%")
        )
        return {self.WARM_INIT_FILE: sql.encode()}

    def find_binaries(self, bin_dir: Path | None) -> dict[str, Path]:
        server, searched = find_executable(
            ["mariadbd", "mysqld"], bin_dir=bin_dir, extra_dirs=SERVER_DIRS
        )
        hint = (
            "Install MariaDB (Debian: apt-get install mariadb-server) or point "
            "integration_mysql_bin_dir / INTEGRATION_MYSQL_BIN_DIR at its directory."
        )
        if server is None:
            raise BackendUnavailable(
                "no MySQL/MariaDB server binary (mariadbd, mysqld) found; looked in "
                + ", ".join(searched)
                + ". "
                + hint
            )
        version = subprocess.run(
            [str(server), "--version"], capture_output=True, text=True, timeout=30, check=False
        ).stdout
        if "mariadb" not in version.lower():
            raise BackendUnavailable(
                f"{server} is Oracle MySQL ({version.strip()}); the local backend runs MariaDB "
                "only. Use the docker backend for MySQL, or " + hint
            )
        install_db, searched = find_executable(
            ["mariadb-install-db", "mysql_install_db"],
            bin_dir=bin_dir,
            extra_dirs=[server.parent, *SERVER_DIRS],
        )
        if install_db is None:
            raise BackendUnavailable(
                f"found {server} but no mariadb-install-db; looked in "
                + ", ".join(searched)
                + ". "
                + hint
            )
        return {"server": server, "install_db": install_db}

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
        sockets = runner.sockets
        data.mkdir()
        runner.own(data)
        runner.initialise(
            [
                str(binaries["install_db"]),
                "--no-defaults",
                f"--datadir={data}",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
                "--skip-name-resolve",
                # The server's own redo log size: else the first start rewrites a 96 MB
                # log (and a warm start copies it).
                "--innodb-log-file-size=48M",
            ],
            output=data,
            what="mariadb-install-db",
        )
        # Read by the server before it accepts connections: the probe's first success
        # already sees the password and the database.
        init_file = workdir / "init.sql"
        password = credentials.password.replace("\\", "\\\\").replace("'", "\\'")
        # The SQL holds our own names and an escaped random password.
        runner.write_secret(
            init_file,
            # install-db also makes password-less root@127.0.0.1, root@::1 and
            # root@<hostname>, which would win over root@'%' for TCP logins.
            "DELETE FROM mysql.global_priv WHERE User = '' OR "  # noqa: S608
            "(User = 'root' AND Host NOT IN ('localhost'));\n"
            "FLUSH PRIVILEGES;\n"
            f"ALTER USER 'root'@'localhost' IDENTIFIED BY '{password}';\n"
            f"CREATE USER IF NOT EXISTS 'root'@'%' IDENTIFIED BY '{password}';\n"
            "GRANT ALL PRIVILEGES ON *.* TO 'root'@'%' WITH GRANT OPTION;\n"
            f"CREATE DATABASE IF NOT EXISTS `{credentials.database}`;\n",
        )
        command = [
            str(binaries["server"]),
            "--no-defaults",
            f"--datadir={data}",
            f"--port={port}",
            "--bind-address=127.0.0.1",
            f"--socket={sockets / 'mysqld.sock'}",
            f"--pid-file={sockets / 'mysqld.pid'}",
            f"--init-file={init_file}",
            "--skip-name-resolve",
            "--skip-log-bin",
            "--innodb-buffer-pool-size=64M",
            "--innodb-log-file-size=48M",
            "--innodb-doublewrite=0",
            "--log-error=",
            *NON_DURABLE,
            *self._options(),
        ]
        from pytest_integration_kit.services.launch import LocalLaunch  # noqa: PLC0415 - a server's

        return LocalLaunch(command=command, remove_when_ready=[init_file])

    def probe(self, endpoint: Endpoint, timeout: float) -> str:
        try:
            import pymysql  # noqa: PLC0415 - drivers are optional extras
        except ImportError:
            raise self.missing_driver("pymysql") from None
        conn = pymysql.connect(
            host=endpoint.host,
            port=endpoint.port,
            user=endpoint.user,
            password=endpoint.password,
            database=endpoint.database,
            connect_timeout=timeout,
            read_timeout=timeout,
            **pymysql_transport(endpoint),
        )
        try:
            with conn.cursor() as cursor:
                cursor.execute("SELECT 1")
                cursor.fetchone()
            # MariaDB prefixes "5.5.5-" for the sake of old MySQL clients.
            return str(conn.get_server_info()).removeprefix("5.5.5-")
        finally:
            conn.close()

    def connection_count(self, endpoint: Endpoint, timeout: float) -> int | None:
        """``Threads_connected``, this connection excluded."""
        import pymysql  # noqa: PLC0415 - drivers are optional extras

        conn = pymysql.connect(
            host=endpoint.host,
            port=endpoint.port,
            user=endpoint.user,
            password=endpoint.password,
            connect_timeout=timeout,
            read_timeout=timeout,
            **pymysql_transport(endpoint),
        )
        try:
            with conn.cursor() as cursor:
                cursor.execute("SHOW GLOBAL STATUS LIKE 'Threads_connected'")
                row = cursor.fetchone()
            return int(row[1]) - 1 if row else None
        finally:
            conn.close()
