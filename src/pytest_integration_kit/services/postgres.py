"""PostgreSQL."""

from __future__ import annotations

import re
import signal
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from pytest_integration_kit.errors import BackendUnavailable
from pytest_integration_kit.services.spec import (
    Credentials,
    LocalLaunch,
    ServiceSpec,
    find_executable,
)

if TYPE_CHECKING:
    from pytest_integration_kit.backends.local import LocalRunner
    from pytest_integration_kit.services.endpoint import Endpoint

__all__ = ["PostgresSpec"]

#: Test data need not survive a crash: these make writes several times cheaper.
NON_DURABLE = ("fsync=off", "synchronous_commit=off", "full_page_writes=off")


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

    def container_env(self, credentials: Credentials) -> dict[str, str]:
        return {
            "POSTGRES_USER": credentials.user,
            "POSTGRES_PASSWORD": credentials.password,
            "POSTGRES_DB": credentials.database,
        }

    def container_command(self, credentials: Credentials) -> list[str]:
        command = ["postgres"]
        for option in NON_DURABLE:
            command += ["-c", option]
        return command

    def container_tmpfs(self) -> dict[str, str]:
        # The parent of PGDATA in every official image (17: .../data, 18: .../18/docker).
        return {"/var/lib/postgresql": "rw"}

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
        return LocalLaunch(command=command)

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
