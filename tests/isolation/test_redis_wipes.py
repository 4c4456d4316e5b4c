"""FLUSHALL on the shared Redis server: a warning naming the test; a server per worker."""

from __future__ import annotations

import re

import pytest

#: Two tests on two xdist workers, in step through files: ``keeper`` writes a key in its
#: own db index and waits; ``flusher`` runs FLUSHALL through a client of its own, built
#: from redis_database as code under test would; ``keeper`` then says if its key survived.
STEPS = """
import os
import time
from pathlib import Path

import pytest
import redis

HERE = Path(__file__).parent


def wait_for(name):
    deadline = time.monotonic() + 60
    while not (HERE / name).exists():
        assert time.monotonic() < deadline, f"the other worker never wrote {name}"
        time.sleep(0.05)


@pytest.mark.xdist_group("keeper")
def test_keeper(redis_client, redis_server):
    redis_client.set("mine", "still here")
    (HERE / "keeper.address").write_text(redis_server.address)
    (HERE / "keeper.ready").touch()
    wait_for("flusher.done")
    (HERE / "keeper.result").write_text(str(redis_client.exists("mine")))


@pytest.mark.xdist_group("flusher")
def test_flusher(redis_database, redis_server):
    wait_for("keeper.ready")
    own = redis.Redis.from_url(redis_database.url)
    own.flushall()
    own.close()
    (HERE / "flusher.address").write_text(redis_server.address)
    (HERE / "flusher.done").touch()
"""

INI = "[pytest]\nasyncio_default_fixture_loop_scope = function\n{extra}\n"


def _run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    pytester.makepyfile(test_steps=STEPS)
    return pytester.runpytest_subprocess(
        "-n", "2", "--dist", "loadgroup", "-p", "no:randomly", *args
    )


def _read(pytester: pytest.Pytester, name: str) -> str:
    return pytester.path.joinpath(name).read_text()


def test_flushall_on_the_shared_server_warns_naming_the_test(
    pytester: pytest.Pytester, backend_env: str
) -> None:
    pytester.makeini(INI.format(extra=""))
    result = _run(pytester, "-W", "default")
    result.assert_outcomes(passed=2)
    assert _read(pytester, "keeper.address") == _read(pytester, "flusher.address")  # one server
    assert _read(pytester, "keeper.result") == "0"  # the other worker's key is gone
    out = result.stdout.str()
    assert "IntegrationKitWarning" in out
    assert re.search(r"test_steps\.py::test_flusher: db 0 of the shared Redis server", out)
    assert "integration_redis_per_worker = true" in out
    assert "never FLUSHALL" in out


def test_the_warning_fails_a_suite_with_filterwarnings_error(
    pytester: pytest.Pytester, backend_env: str
) -> None:
    pytester.makeini(INI.format(extra="filterwarnings = error"))
    result = _run(pytester)
    # The keeper's worker sees it too: its data is gone, and its test may have needed it.
    result.assert_outcomes(passed=2, errors=2)
    result.stdout.fnmatch_lines(["*ERROR at teardown of test_flusher*", "*IntegrationKitWarning*"])


def test_flushdb_on_the_own_db_index_does_not_warn(
    pytester: pytest.Pytester, backend_env: str
) -> None:
    pytester.makeini(INI.format(extra="filterwarnings = error"))
    pytester.makepyfile(
        test_own="""
        import redis

        def test_kit_client(redis_client):
            redis_client.set("a", 1)
            redis_client.flushdb()

        def test_own_client(redis_database):
            own = redis.Redis.from_url(redis_database.url)
            own.set("b", 2)
            own.flushdb()
            own.close()

        def test_after(redis_client):
            assert redis_client.dbsize() == 0
        """
    )
    result = pytester.runpytest_subprocess("-n", "2", "-p", "no:randomly")
    result.assert_outcomes(passed=3)
    assert "IntegrationKitWarning" not in result.stdout.str()


# The url backend gives one server: a server per worker needs docker or local.
@pytest.mark.parametrize("backend", ["docker", "local"])
def test_a_server_per_worker_keeps_flushall_to_its_worker(
    pytester: pytest.Pytester, backend_env: str
) -> None:
    pytester.makeini(
        INI.format(extra="integration_redis_per_worker = true\nfilterwarnings = error")
    )
    result = _run(pytester)
    result.assert_outcomes(passed=2)
    assert _read(pytester, "keeper.address") != _read(pytester, "flusher.address")  # two servers
    assert _read(pytester, "keeper.result") == "1"  # untouched by the other's FLUSHALL
    assert "IntegrationKitWarning" not in result.stdout.str()


@pytest.mark.parametrize("backend", ["docker", "local"])
def test_a_server_per_worker_from_the_environment(
    pytester: pytest.Pytester, backend_env: str
) -> None:
    """The env var spelling; one worker (no xdist) has one private server all the same."""
    pytester.makeini(INI.format(extra="filterwarnings = error"))
    pytester.makepyfile(
        test_one="""
        def test_flushall(redis_client):
            redis_client.set("a", 1)
            redis_client.flushall()
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:randomly", "--integration-redis-per-worker")
    result.assert_outcomes(passed=1)


@pytest.mark.parametrize("backend", ["url"])
def test_per_worker_on_the_url_backend_is_said(pytester: pytest.Pytester, backend_env: str) -> None:
    pytester.makeini(INI.format(extra="integration_redis_per_worker = true"))
    pytester.makepyfile(test_one="def test_x(redis_client):\n    assert redis_client.ping()\n")
    result = pytester.runpytest_subprocess("-p", "no:randomly", "-W", "default")
    result.assert_outcomes(passed=1)
    assert "integration_redis_backend is url" in result.stdout.str()


OWN = """
import redis


def test_1_flushall(redis_client, redis_database):
    redis_client.set("a", 1)
    own = redis.Redis.from_url(redis_database.url)
    own.flushall()
    own.close()


def test_2_writes(redis_client):
    redis_client.mset({f"k{i}": i for i in range(1000)})


def test_3_a_client_of_its_own_starts_empty(redis_database):
    own = redis.Redis.from_url(redis_database.url)
    assert own.dbsize() == 0
    own.close()


def test_4_writes_again(redis_client):
    assert redis_client.dbsize() == 0
    redis_client.set("b", 2)


def test_5_the_kit_s_client_starts_empty(redis_client):
    assert redis_client.dbsize() == 0
"""


def test_flushall_on_the_session_s_own_server_is_not_warned_and_the_next_test_starts_empty(
    pytester: pytest.Pytester, backend_env: str
) -> None:
    """Without xdist and not kept, the server the session started holds its data only:
    a FLUSHALL loses nobody else's, so nothing is looked at (the clean is read before the
    next test instead of at the teardown). The url backend's server is shared: warned."""
    pytester.makeini(INI.format(extra="filterwarnings = error"))
    pytester.makepyfile(test_own=OWN)
    result = pytester.runpytest_subprocess("-p", "no:randomly")
    if backend_env == "url":
        result.assert_outcomes(passed=5, errors=1)
        result.stdout.fnmatch_lines(["*ERROR at teardown of test_1_flushall*"])
    else:
        result.assert_outcomes(passed=5)
        assert "IntegrationKitWarning" not in result.stdout.str()


GONE = """
def test_1_stops_the_server(redis_client):
    redis_client.set("a", 1)
    redis_client.shutdown(nosave=True)


def test_2_needs_no_redis():
    pass


def test_3_uses_redis(redis_client):
    pass
"""


@pytest.mark.parametrize("backend", ["local"])  # a server of the session's own, stoppable
def test_a_clean_that_cannot_be_done_is_said_by_the_next_test_that_uses_redis(
    pytester: pytest.Pytester, backend_env: str
) -> None:
    """The clean is read before the next test: when the server is gone by then, a test
    that does not use Redis is not blamed; the next one that does is, at its setup."""
    pytester.makepyfile(test_gone=GONE)
    result = pytester.runpytest_subprocess("-p", "no:randomly", "-v")
    # (test_1's own teardown may see the server gone too, as it sends the clean.)
    result.stdout.fnmatch_lines(
        ["*test_2_needs_no_redis PASSED*", "*ERROR at setup of test_3_uses_redis*"]
    )
