"""PostgreSQL."""

from __future__ import annotations

import base64
import hashlib
import math
import os
import re
import shlex
import signal
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from pytest_integration_kit.errors import BackendUnavailable, ServerStartError
from pytest_integration_kit.services.server_settings import (
    extensions_setting,
    init_setting,
    missing_extension_fix,
    options_setting,
)
from pytest_integration_kit.services.spec import ServiceSpec, find_executable

if TYPE_CHECKING:
    from collections.abc import Sequence

    from pytest_integration_kit.backends.local_runner import LocalRunner
    from pytest_integration_kit.services.endpoint import Endpoint
    from pytest_integration_kit.services.launch import Credentials, LocalLaunch, WarmLaunch
    from pytest_integration_kit.services.spec import ServerContext
    from pytest_integration_kit.settings import Setting

__all__ = ["PostgresSpec"]

#: Test data need not survive a crash: these make writes several times cheaper.
NON_DURABLE = ("fsync=off", "synchronous_commit=off", "full_page_writes=off")
#: Settings the kit gives the server itself: integration_postgres_options cannot.
RESERVED = (
    "port",
    "listen_addresses",
    "unix_socket_directories",
    "data_directory",
    "config_file",
    "hba_file",
    "ident_file",
)
#: SQLSTATEs of CREATE EXTENSION for an extension the server does not have: feature not
#: supported ("is not available", 15+) and undefined file (the control file, older).
MISSING_EXTENSION_STATES = ("0A000", "58P01")


#: ALTER ROLE in a container over its Unix socket (trust, as initdb leaves local
#: connections in the official image), retried until the server accepts connections.
ALTER_ROLE = (
    'for i in $(seq "$1"); do psql -X -q -v ON_ERROR_STOP=1 -U "$2" -d postgres -c "$3" '
    ">/dev/null 2>&1 && exit 0; sleep 0.1; done; exit 1"
)


#: The launcher of a container started from a warm image: ALTER ROLE in single-user mode
#: (through the image's entrypoint, which drops root as for the server), then the server.
#: Should the first step fail, the server starts all the same, refuses the session's
#: password, and the docker backend sets it over ``docker exec`` (ALTER_ROLE) instead.
SINGLE_USER_LAUNCH = """\
printf '%s\\n' "${var}" | {single} >/dev/null 2>&1 ||
    echo "pytest-integration-kit: ALTER ROLE in single-user mode failed" >&2
unset {var}
exec {server}
"""
#: The launcher's statement, in the container's environment (not on its command line).
ROLE_VARIABLE = "PYTEST_INTEGRATION_KIT_ROLE_SQL"


def scram_verifier(password: str, iterations: int = 4096) -> str:
    """The SCRAM-SHA-256 verifier PostgreSQL stores for ``password`` (RFC 5803 form):
    ALTER ROLE takes it as it is, so the password itself never enters the container."""
    import hmac  # noqa: PLC0415 - only a server started here is given a password

    salt = os.urandom(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    stored = hashlib.sha256(hmac.new(salted, b"Client Key", "sha256").digest()).digest()
    server = hmac.new(salted, b"Server Key", "sha256").digest()

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored)}:{b64(server)}"


def _version_key(path: Path) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", path.parent.name))


class PostgresSpec(ServiceSpec):
    name = "postgres"
    title = "PostgreSQL"
    scheme = "postgresql+psycopg"
    container_port = 5432
    default_image = "postgres:17.6"
    url_schemes = ("postgresql", "postgres")
    url_example = "postgresql://app:secret@127.0.0.1:5432/app"
    group_markers = ("requires_db",)
    default_user = "postgres"
    default_database = "postgres"
    os_user = "postgres"
    stop_signal = signal.SIGINT  # "fast" shutdown: no waiting for clients to leave
    password_in_data_dir = True  # initdb --pwfile
    extra = "postgres"
    driver_packages = ("psycopg", "psycopg2", "asyncpg")
    server_only_settings = ("options", "extensions", "init")

    def extra_settings(self) -> Sequence[Setting]:
        return (
            options_setting(
                self.name,
                self.title,
                form="-c name=value",
                name_pattern=r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$",
                reserved=RESERVED,
                example="work_mem=64MB;log_min_duration_statement=0",
                bad_example="work mem=64MB",
            ),
            extensions_setting(),
            init_setting(),
        )

    def _options(self) -> list[str]:
        command: list[str] = []
        for option in self.values.get("options") or ():
            command += ["-c", str(option)]
        return command

    def identity(self) -> list[str]:
        # The init files' contents, not only their names: an edited file is a new server.
        files = [
            f"{path}:{hashlib.sha256(path.read_bytes()).hexdigest()}"
            for path in self.values.get("init") or ()
            if path.is_file()
        ]
        return [*super().identity(), *files]

    def container_env(self, credentials: Credentials) -> dict[str, str]:
        return {
            "POSTGRES_USER": credentials.user,
            "POSTGRES_PASSWORD": credentials.password,
            "POSTGRES_DB": credentials.database,
            # initdb otherwise scans the image's zoneinfo for the zone matching the
            # container's clock (about a second of a cold start): named, it is taken.
            "TZ": "UTC",
            # initdb's pg_hba trusts 127.0.0.1 unless told: a container in this machine's
            # network (integration_docker_host_network) would let anyone on it in.
            "POSTGRES_INITDB_ARGS": "--auth-host=scram-sha-256",
        }

    def container_command(self, credentials: Credentials) -> list[str]:
        command = ["postgres"]
        for option in NON_DURABLE:
            command += ["-c", option]
        return command + self._options()

    def host_network(self, port: int) -> tuple[dict[str, str], list[str]]:
        # PGPORT is the server's default port, and psql's in `docker exec`; the
        # entrypoint's init server listens on its socket only.
        return {"PGPORT": str(port)}, ["-c", "listen_addresses=127.0.0.1"]

    def container_tmpfs(self) -> dict[str, str]:
        # The parent of PGDATA in every official image (17: .../data, 18: .../18/docker).
        return {"/var/lib/postgresql": "rw"}

    # Outside the official images' VOLUME (17: .../postgresql/data, 18: .../postgresql).
    warm_data_dir = "/var/lib/pytest-integration-kit/postgres"

    def warm_container(
        self, credentials: Credentials, *, cached: bool
    ) -> tuple[dict[str, str], list[str]]:
        # The entrypoint makes PGDATA, owns it and skips initdb when PG_VERSION is there.
        env = {**self.container_env(credentials), "PGDATA": str(self.warm_data_dir)}
        return env, self.container_command(credentials)

    def warm_launch(
        self, credentials: Credentials, entrypoint: Sequence[str], command: Sequence[str]
    ) -> WarmLaunch | None:
        # No docker exec and no polling: the password is set before the server starts.
        from pytest_integration_kit.services.launch import WarmLaunch  # noqa: PLC0415 - made when a server starts (issue #11)

        if not command or command[0] != "postgres":
            return None  # the official entrypoint's contract is for `postgres …` only
        role = credentials.user.replace('"', '""')
        sql = f"ALTER ROLE \"{role}\" PASSWORD '{scram_verifier(credentials.password)}'"
        # `postgres --single [options] database`, the statement on stdin, one per line.
        single = [*entrypoint, "postgres", "--single", *command[1:], self.default_database]
        script = SINGLE_USER_LAUNCH.format(
            var=ROLE_VARIABLE,
            single=shlex.join(single),
            server=shlex.join([*entrypoint, *command]),
        )
        return WarmLaunch(script, {ROLE_VARIABLE: sql})

    def warm_seal(self, server: ServerContext, timeout: float) -> None:
        self._alter_role(server, self.default_user, "NULL", timeout)

    def warm_unseal(self, server: ServerContext, credentials: Credentials, timeout: float) -> None:
        verifier = scram_verifier(credentials.password)
        self._alter_role(server, credentials.user, f"'{verifier}'", timeout)

    def _alter_role(
        self, server: ServerContext, user: str, password_sql: str, timeout: float
    ) -> None:
        role = user.replace('"', '""')
        tries = str(max(1, math.ceil(timeout / 0.1)))
        sql = f'ALTER ROLE "{role}" PASSWORD {password_sql}'
        code, _ = server.run(["sh", "-c", ALTER_ROLE, "sh", tries, user, sql], timeout)
        if code != 0:
            raise ServerStartError(
                f"{self.title}: could not set the password of {user!r} over the container's "
                "Unix socket (psql, trust): the warm image is not usable"
            )

    def find_binaries(self, bin_dir: Path | None) -> dict[str, Path]:
        extra_dirs: list[Path] = []
        pg_config, _ = find_executable(["pg_config"], bin_dir=None)
        if pg_config is not None:
            try:
                out = subprocess.run(
                    [str(pg_config), "--bindir"],
                    capture_output=True,
                    text=True,
                    timeout=10,
                    check=True,
                ).stdout.strip()
                extra_dirs.append(Path(out))
            except (OSError, subprocess.SubprocessError):
                pass
        extra_dirs += sorted(
            (p.parent for p in Path("/usr/lib/postgresql").glob("*/bin/postgres")),
            key=lambda d: _version_key(d / "postgres"),
            reverse=True,
        )
        extra_dirs.append(Path("/usr/local/pgsql/bin"))
        postgres, searched = find_executable(["postgres"], bin_dir=bin_dir, extra_dirs=extra_dirs)
        if postgres is None:
            raise BackendUnavailable(
                "no PostgreSQL server binaries (postgres, initdb) found; looked in "
                + ", ".join(searched)
                + ". Install them (Debian: apt-get install postgresql) or point "
                "integration_postgres_bin_dir / INTEGRATION_POSTGRES_BIN_DIR at their directory."
            )
        # initdb must come from the same installation as postgres.
        initdb = postgres.resolve().parent / "initdb"
        if not initdb.is_file():
            raise BackendUnavailable(
                f"found {postgres} but no initdb beside it in {initdb.parent}; point "
                "integration_postgres_bin_dir / INTEGRATION_POSTGRES_BIN_DIR at a directory "
                "holding both."
            )
        return {"postgres": postgres.resolve(), "initdb": initdb}

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
        pwfile = workdir / "pwfile"
        runner.write_secret(pwfile, credentials.password + "\n")
        runner.initialise(
            [
                str(binaries["initdb"]),
                "--pgdata",
                str(data),
                "--username",
                credentials.user,
                "--pwfile",
                str(pwfile),
                "--auth",
                "scram-sha-256",
                "--encoding",
                "UTF8",
                "--locale",
                "C",
                "--no-sync",
                "--no-instructions",
            ],
            output=data,
            what="initdb",
        )
        pwfile.unlink()
        command = [
            str(binaries["postgres"]),
            "-D",
            str(data),
            "-p",
            str(port),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            f"unix_socket_directories={sockets}",
            "-c",
            "max_connections=200",
        ]
        for option in NON_DURABLE:
            command += ["-c", option]
        from pytest_integration_kit.services.launch import LocalLaunch  # noqa: PLC0415 - a server's

        return LocalLaunch(command=command + self._options())

    def probe(self, endpoint: Endpoint, timeout: float) -> str:
        try:
            import psycopg  # noqa: PLC0415 - drivers are optional extras
        except ImportError:
            raise self.missing_driver("psycopg") from None
        with psycopg.connect(
            host=endpoint.host,
            port=endpoint.port,
            user=endpoint.user,
            password=endpoint.password,
            dbname=endpoint.database,
            connect_timeout=max(2, round(timeout)),  # libpq's minimum is 2 s
            autocommit=True,
        ) as conn:
            conn.execute("SELECT 1").fetchone()
            version = conn.info.parameter_status("server_version") or ""
            return version.split(" ", 1)[0]  # "15.18 (Debian 15.18-0+deb12u1)" -> "15.18"

    def after_start(self, endpoint: Endpoint, where: str) -> None:
        """Create ``integration_postgres_extensions`` and run ``integration_postgres_init``
        in template1, which every database the kit makes on this server copies."""
        extensions = tuple(self.values.get("extensions") or ())
        init_files = tuple(self.values.get("init") or ())
        if not extensions and not init_files:
            return
        import psycopg  # noqa: PLC0415 - the probe needed it already

        databases = dict.fromkeys(["template1", endpoint.database])
        for database in databases if extensions else ["template1"]:
            with psycopg.connect(
                host=endpoint.host,
                port=endpoint.port,
                user=endpoint.user,
                password=endpoint.password,
                dbname=database,
                connect_timeout=10,
                autocommit=True,
            ) as conn:
                for extension in extensions:
                    self._create_extension(conn, extension, endpoint, where)
                if database != "template1":
                    continue
                for path in init_files:
                    try:
                        conn.execute(path.read_text(encoding="utf-8").encode())
                    except (OSError, psycopg.Error) as exc:
                        raise ServerStartError(
                            f"integration_postgres_init: {path} failed on {self.title} "
                            f"({where}): {type(exc).__name__}: {exc}"
                        ) from None

    def _create_extension(self, conn: object, name: str, endpoint: Endpoint, where: str) -> None:
        import psycopg  # noqa: PLC0415 - the probe needed it already

        assert isinstance(conn, psycopg.Connection)
        try:
            conn.execute(f'CREATE EXTENSION IF NOT EXISTS "{name}" CASCADE'.encode())
        except psycopg.Error as exc:
            major = endpoint.version.split(".", 1)[0] or "<major>"
            if exc.sqlstate in MISSING_EXTENSION_STATES:
                fix = missing_extension_fix(name, major, docker=endpoint.backend == "docker")
                raise ServerStartError(
                    f"integration_postgres_extensions: the extension {name!r} is not "
                    f"installed on this PostgreSQL {endpoint.version} ({where}); {fix}"
                ) from None
            raise ServerStartError(
                f"integration_postgres_extensions: CREATE EXTENSION {name} failed on "
                f"{self.title} ({where}): {type(exc).__name__}: {exc}"
            ) from None

    def connection_count(self, endpoint: Endpoint, timeout: float) -> int | None:
        """Client backends in ``pg_stat_activity``, this one excluded."""
        import psycopg  # noqa: PLC0415 - drivers are optional extras

        with psycopg.connect(
            host=endpoint.host,
            port=endpoint.port,
            user=endpoint.user,
            password=endpoint.password,
            dbname=endpoint.database,
            connect_timeout=max(2, round(timeout)),
            autocommit=True,
        ) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
            ).fetchone()
            return int(row[0]) if row else None
