"""The kit's own PyMySQL connections to a server it started ask for no TLS.

PyMySQL 1.2+ asks for TLS wherever the server offers it. A server here offers it with
a certificate from trustme; the server's own ``Ssl_accepts`` counter then says whether
the readiness probes, the login check, the admin connections, the session's engine
or ``mysql_connection`` made a TLS handshake. The local backend only: the server reads
the certificate from this machine's files.
"""

from __future__ import annotations

import os
import pwd
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import trustme

from pytest_integration_kit.services.endpoint import Endpoint
from pytest_integration_kit.services.mysql import pymysql_transport

if TYPE_CHECKING:
    from collections.abc import Iterator

#: The backends the run tests (PIK_TEST_BACKENDS narrows them, as for every test).
KIT_BACKENDS = [b.strip() for b in os.environ.get("PIK_TEST_BACKENDS", "docker,local").split(",")]

TESTS = """
import ssl

import pymysql
from sqlalchemy import text


def _accepted(connection):
    return int(connection.execute(text("SHOW GLOBAL STATUS LIKE 'Ssl_accepts'")).one()[1])


def test_the_kits_connections_make_no_handshake(mysql_session, mysql_connection, mysql_server):
    with mysql_connection.cursor() as cursor:
        cursor.execute("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
        assert cursor.fetchone()[1] == ""
    assert mysql_session.execute(text("SHOW SESSION STATUS LIKE 'Ssl_cipher'")).one()[1] == ""
    assert _accepted(mysql_session) == 0

    # The server does offer TLS: a connection that asks for it gets it.
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    own = pymysql.connect(
        host=mysql_server.host, port=mysql_server.port, user=mysql_server.user,
        password=mysql_server.password, ssl=context,
    )
    with own.cursor() as cursor:
        cursor.execute("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
        assert cursor.fetchone()[1] != ""
    own.close()
    assert _accepted(mysql_session) == 1
"""


@pytest.fixture
def certificate() -> Iterator[tuple[Path, Path]]:
    """A certificate and key for 127.0.0.1, readable by the user the server runs as."""
    directory = Path(tempfile.mkdtemp(prefix="pik-mysql-tls-"))
    try:
        cert = trustme.CA().issue_cert("127.0.0.1")
        key_path, cert_path = directory / "server.key", directory / "server.pem"
        cert.private_key_pem.write_to_path(str(key_path))
        cert.cert_chain_pems[0].write_to_path(str(cert_path))
        if os.geteuid() == 0:  # the local backend runs the server as `mysql` (or nobody)
            user = "mysql" if _exists("mysql") else "nobody"
            for path in (directory, key_path, cert_path):
                shutil.chown(path, user)
        yield cert_path, key_path
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.mark.parametrize("backend", [b for b in KIT_BACKENDS if b == "local"])
def test_no_tls_to_a_server_the_kit_started(
    pytester: pytest.Pytester, backend_env: str, certificate: tuple[Path, Path]
) -> None:
    cert, key = certificate
    pytester.makeini(
        f"[pytest]\nintegration_mysql_options = ssl_cert={cert};ssl_key={key}\n"
        "asyncio_default_fixture_loop_scope = function\nfilterwarnings = error\n"
    )
    pytester.makepyfile(test_tls=TESTS)
    result = pytester.runpytest_subprocess("-v")
    result.assert_outcomes(passed=1)


def _exists(user: str) -> bool:
    try:
        pwd.getpwnam(user)
    except KeyError:
        return False
    return True


def _endpoint(backend: str, host: str) -> Endpoint:
    return Endpoint(
        service="mysql",
        host=host,
        port=3306,
        user="root",
        password="x",
        database="app",
        backend=backend,
        scheme="mysql+pymysql",
    )


def test_elsewhere_the_drivers_default_stands() -> None:
    assert pymysql_transport(_endpoint("local", "127.0.0.1")) == {"ssl_disabled": True}
    assert pymysql_transport(_endpoint("docker", "127.0.0.1")) == {"ssl_disabled": True}
    # A URL's server, even on the loopback, and a remote engine's container.
    assert pymysql_transport(_endpoint("url", "127.0.0.1")) == {}
    assert pymysql_transport(_endpoint("docker", "10.1.2.3")) == {}
