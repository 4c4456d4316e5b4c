"""integration_redis_password: none (empty) or a fixed one, on every backend that starts Redis."""

from __future__ import annotations

import pytest

NO_PASSWORD_TESTS = """
import ipaddress

import redis


def test_a_client_built_from_host_and_port(redis_server, redis_database, redis_client):
    assert redis_server.password == ""
    # This machine only, password or not: the loopback, or a container's own address on
    # the engine's bridge network (integration_docker_direct).
    assert redis_server.host == "127.0.0.1" or (
        redis_server.backend == "docker" and ipaddress.ip_address(redis_server.host).is_private
    )
    assert "@" not in redis_server.url
    db = int(redis_database.database)
    client = redis.Redis(host=redis_server.host, port=redis_server.port, db=db)
    client.set("k", "v")
    assert redis_client.get("k") == b"v"
    client.close()
"""

FIXED_PASSWORD_TESTS = """
import redis

PASSWORD = "p@ss/w:rd%#?x"


def test_the_fixed_password(redis_server, redis_database, redis_client):
    assert redis_server.password == PASSWORD
    client = redis.Redis.from_url(redis_database.url)
    client.set("k", "v")
    assert redis_client.get("k") == b"v"
    client.close()
    anonymous = redis.Redis(host=redis_server.host, port=redis_server.port)
    try:
        anonymous.ping()
    except redis.AuthenticationError:
        pass
    else:
        raise AssertionError("the server let a client in without the password")
"""


#: With the url backend the server is someone else's: its URL's password stands.
URL_BACKEND_TESTS = """
def test_the_urls_password_stands(redis_server):
    assert redis_server.backend == "url"
    assert redis_server.password
"""


def test_no_password(pytester: pytest.Pytester, backend_env: str) -> None:
    pytester.makeini("[pytest]\nintegration_redis_password =\n")
    pytester.makepyfile(test_app=URL_BACKEND_TESTS if backend_env == "url" else NO_PASSWORD_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:randomly")
    result.assert_outcomes(passed=1)


def test_a_fixed_password_never_shown(pytester: pytest.Pytester, backend_env: str) -> None:
    pytester.makeini("[pytest]\nintegration_redis_password = p@ss/w:rd%#?x\n")
    tests = URL_BACKEND_TESTS if backend_env == "url" else FIXED_PASSWORD_TESTS
    pytester.makepyfile(test_app=tests)
    result = pytester.runpytest_subprocess("-p", "no:randomly", "-v")
    result.assert_outcomes(passed=1)
    assert "p@ss" not in result.stdout.str() + result.stderr.str()
    result.stdout.fnmatch_lines(["*redis_password=[*][*][*] (ini)*"])
