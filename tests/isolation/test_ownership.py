"""One shared server, runs on two hosts: leases keep a live run's things, and let a
killed run's be dropped from the other host once they run out.

The second host is a process in its own UTS and PID namespaces (``other_host``): its
process id is 1 there, a pid that is alive here, so only the lease can tell.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
from isolation_project import run, write_project

from other_host import holder_elsewhere, kill
from pytest_integration_kit.backends.base import RunningServer, ServerOptions
from pytest_integration_kit.backends.local import LocalBackend
from pytest_integration_kit.isolation import IsolatedDatabases, RedisKeyspace
from pytest_integration_kit.isolation.ownership import (
    DEFAULT_LEASE_SECONDS,
    LeaseRenewer,
    OwnerLabel,
    abandoned,
    host_identity,
    owner_label,
    parse_owner,
)
from pytest_integration_kit.isolation.redis import CLAIM_PREFIX
from pytest_integration_kit.services import spec_for
from pytest_integration_kit.settings import settings_table

#: Short enough to wait out, long enough that a loaded machine still renews in time.
LEASE = 5.0


@pytest.fixture(scope="module")
def own_servers() -> Iterator[Callable[[str], str]]:
    """A server per service that only this module's tests use (started on first use):
    the url servers' URL, given a service.

    Not the session's url servers: the other xdist worker's runs reap and claim there
    too, and once the holder's lease has run out, the first of them to look drops its
    database (or takes its Redis index) before this test's own look can (CI,
    2026-12-07: ``reaped == []``, the database already gone).
    """
    started: dict[str, RunningServer] = {}
    backend = LocalBackend()

    def url(service: str) -> str:
        if service not in started:
            options = ServerOptions(
                spec=spec_for(service), image="", startup_timeout=60, session_id="tests-lease"
            )
            started[service] = backend.start(options)
        return started[service].endpoint.url

    try:
        yield url
    finally:
        for server in started.values():
            server.stop()


@pytest.fixture
def here(
    request: pytest.FixtureRequest, own_servers: Callable[[str], str]
) -> Iterator[IsolatedDatabases]:
    """This host's view of the module's server (it makes nothing of its own)."""
    endpoint = spec_for(str(request.param)).endpoint_from_url(own_servers(str(request.param)))
    databases = IsolatedDatabases(endpoint, lease_seconds=LEASE)
    yield databases
    databases.close()


def exists(databases: IsolatedDatabases, name: str) -> bool:
    with databases.admin_engine.connect() as conn:
        return databases.admin.exists(conn, name)


@pytest.mark.parametrize("here", ["postgres", "mysql"], indirect=True)
def test_another_hosts_database_lives_while_renewed_and_is_dropped_once_its_lease_ran_out(
    here: IsolatedDatabases, own_servers: Callable[[str], str]
) -> None:
    service = here.endpoint.service
    with holder_elsewhere(service, own_servers(service), LEASE) as (process, made):
        name = made["name"]
        assert made["host"] != host_identity()
        with here.admin_engine.connect() as conn:
            owner = parse_owner(here.admin.labelled(conn, name)[name])
        assert owner is not None
        assert owner.host == made["host"]
        assert owner.pid == 1  # alive here: only the lease can say it is gone
        # Two leases long, the live holder renews: no run here drops its database.
        deadline = time.monotonic() + 2 * LEASE
        while time.monotonic() < deadline:
            assert name not in here.reap_orphans()
            time.sleep(0.5)
        assert exists(here, name)

        kill(process)  # the CI job is cancelled: nothing of it runs any more
        assert name not in here.reap_orphans()  # its lease still runs
        assert exists(here, name)
        time.sleep(LEASE + 1.5)
        # Dropped by this host's look once the lease ran out (a renewal in flight at
        # the kill ends at most a lease after it). Never dropped before: asserted above.
        assert name in here.reap_orphans()
        assert not exists(here, name)


def test_another_hosts_redis_index_is_held_while_renewed_and_free_after(
    own_servers: Callable[[str], str],
) -> None:
    endpoint = spec_for("redis").endpoint_from_url(own_servers("redis"))
    base = RedisKeyspace(endpoint)._connect(0)  # db 0, where the claims are
    try:
        with holder_elsewhere("redis", endpoint.url, LEASE) as (process, made):
            key = f"{CLAIM_PREFIX}{made['name']}"
            time.sleep(2 * LEASE)
            assert base.get(key) == made["owner"].encode()  # renewed past two leases
            kill(process)
            time.sleep(LEASE + 1.5)
            assert base.get(key) is None  # Redis let the claim go: any host may take it
    finally:
        base.close()


def test_the_setting_defaults_to_the_librarys_lease() -> None:
    (setting,) = [s for s in settings_table() if s.name == "lease_seconds"]
    assert setting.default == DEFAULT_LEASE_SECONDS


def test_labels_name_host_pid_and_lease_end_and_older_ones_still_parse() -> None:
    label = owner_label(host="runner/4026531836", pid=42, until=1_800_000_000.4)
    assert label == "pytest-integration-kit host=runner/4026531836 pid=42 until=1800000000"
    assert parse_owner(label) == OwnerLabel("runner/4026531836", 42, 1_800_000_000.0)
    assert parse_owner("pytest-integration-kit host=vm pid=7") == OwnerLabel("vm", 7, None)
    started = owner_label(host="vm/1", pid=42, until=1_800_000_000, started="1799999000.25")
    assert started.endswith(" until=1800000000 started=1799999000.25")
    assert parse_owner(started) == OwnerLabel("vm/1", 42, 1_800_000_000.0, "1799999000.25")
    mine = parse_owner(owner_label())  # this process: its start is in the label
    assert mine is not None
    assert mine.started
    assert parse_owner("made by hand") is None


def test_who_may_drop_what() -> None:
    here = host_identity()
    hostname = here.split("/", 1)[0]
    dead = 2**22 + 7  # above the default pid_max: no such process
    now = 1_800_000_000.0
    assert abandoned(OwnerLabel(here, dead, now + 60), now=now)  # this host: the pid decides
    assert not abandoned(OwnerLabel(here, 1, now - 60), now=now)
    me = parse_owner(owner_label())
    assert me is not None
    assert not abandoned(me, now=now)  # this process, its start matching
    assert abandoned(OwnerLabel(here, me.pid, now + 60, "1000000000.00"), now=now)  # pid reused
    assert abandoned(OwnerLabel(hostname, dead), now=now)  # a label from before namespaces
    assert abandoned(OwnerLabel("elsewhere/1", 1, now - 1), now=now)  # elsewhere: the lease
    assert not abandoned(OwnerLabel("elsewhere/1", dead, now + 1), now=now)
    assert not abandoned(OwnerLabel("elsewhere/1", dead, None), now=now)  # no lease: never
    assert not abandoned(OwnerLabel(f"{hostname}/1", dead, None), now=now)  # another namespace


def test_the_renewer_keeps_renewing_through_a_failing_item() -> None:
    renewed: list[float] = []

    class Broken:
        def renew(self) -> None:
            raise ConnectionError("server restarting")

    class Counted:
        def renew(self) -> None:
            renewed.append(time.monotonic())

    renewer = LeaseRenewer(lease_seconds=1.5)
    renewer.hold(Broken(), Counted())
    time.sleep(2.4)
    renewer.stop()
    assert len(renewed) >= 3  # every 0.5 s, the broken one did not stop the others
    count = len(renewed)
    time.sleep(0.7)
    assert len(renewed) == count  # stopped means stopped


LABEL_TESTS = """
import time

from sqlalchemy import text

from pytest_integration_kit.isolation.ownership import host_identity, parse_owner


def test_its_database_is_labelled_with_the_configured_lease(postgres_session, mysql_session):
    labels = {
        "postgres": postgres_session.execute(text(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database "
            "WHERE datname = current_database()"
        )).scalar(),
        "mysql": mysql_session.execute(text(
            "SELECT SCHEMA_COMMENT FROM information_schema.SCHEMATA "
            "WHERE SCHEMA_NAME = DATABASE()"
        )).scalar(),
    }
    for service, label in labels.items():
        owner = parse_owner(label)
        assert owner is not None, (service, label)
        assert owner.host == host_identity()
        assert 0 < owner.until - time.time() <= 3 + 1, (service, label)
"""


def test_the_lease_setting_reaches_every_label(
    pytester: pytest.Pytester, url_servers: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``integration_lease_seconds`` in the user's ini: their databases' leases say so."""
    write_project(pytester, extra="integration_lease_seconds = 3")
    pytester.makepyfile(test_user=LABEL_TESTS)
    monkeypatch.setenv("INTEGRATION_BACKEND", "url")
    monkeypatch.setenv("INTEGRATION_MISSING", "fail")
    for service in ("postgres", "mysql"):
        monkeypatch.setenv(f"INTEGRATION_{service.upper()}_URL", url_servers[service])
    run(pytester).assert_outcomes(passed=1)


def test_a_lease_below_a_second_is_a_usage_error(pytester: pytest.Pytester) -> None:
    write_project(pytester, extra="integration_lease_seconds = 0.5")
    pytester.makepyfile(test_user="def test_it():\n    pass\n")
    result = run(pytester)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*integration_lease_seconds*0.5*a number of seconds from 1 to 86400*"]
    )
