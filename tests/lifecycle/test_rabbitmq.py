"""RabbitMQ, the first service beyond the three, registered like a third-party one: a
real AMQP handshake, a vhost per xdist worker, its queues purged after each test, on the
docker backend (the offline Debian image) and the local one (Debian's binaries)."""

from __future__ import annotations

import logging
import re
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pika
import pytest
from user_project import REPORTING_CONFTEST, Project, leftovers, make_project, wait_for

from other_host import holder_elsewhere, kill
from pytest_integration_kit.backends.base import RunningServer, ServerOptions
from pytest_integration_kit.backends.local import LocalBackend
from pytest_integration_kit.isolation.rabbitmq import Management, RabbitVhost
from pytest_integration_kit.lifecycle.attached import processes_under
from pytest_integration_kit.services import rabbitmq as rabbitmq_service
from pytest_integration_kit.services.rabbitmq import RabbitMQSpec

#: The offline image CI builds (scripts/build-test-images); users keep ``rabbitmq:3``.
TEST_IMAGE = "pytest-integration-kit/rabbitmq:3"

#: Short enough to wait out, long enough that a loaded machine still renews in time.
LEASE = 5.0

#: As a user has it: the package's entry point registers RabbitMQ; registering it again
#: from a conftest (an install older than the entry point) changes nothing.
CONFTEST = (
    "from pytest_integration_kit import register_service\n"
    "from pytest_integration_kit.services.rabbitmq import RabbitMQSpec\n\n"
    "register_service(RabbitMQSpec())\n" + REPORTING_CONFTEST
)

#: Each test finds the queue its worker's previous test filled empty again, and leaves a
#: message in it; the workers share the queue's name but not its vhost.
TESTS = """
import pytest

@pytest.mark.parametrize("n", range(6))
def test_queue(rabbitmq_server, rabbitmq_vhost, rabbitmq_connection, report, n):
    channel = rabbitmq_connection.channel()
    channel.confirm_delivery()
    assert channel.queue_declare("jobs").method.message_count == 0
    channel.basic_publish("", "jobs", f"job {n}".encode())
    assert channel.queue_declare("jobs", passive=True).method.message_count == 1
    report(service="rabbitmq", address=rabbitmq_server.address, vhost=rabbitmq_vhost.database,
           backend=rabbitmq_server.backend, url=rabbitmq_vhost.url,
           management=rabbitmq_server.ports["management"])

def test_without_a_server():
    pass
"""

HOLDING_TEST = """
import time

def test_hold(rabbitmq_server, report):
    report(service="rabbitmq", address=rabbitmq_server.address)
    time.sleep(600)
"""


def _project(root: Path, tests: str, backend: str, monkeypatch: pytest.MonkeyPatch) -> Project:
    monkeypatch.setenv("INTEGRATION_RABBITMQ_IMAGE", TEST_IMAGE)
    project = make_project(root, tests)
    (root / "conftest.py").write_text(CONFTEST)
    return project


@pytest.mark.parametrize("backend", ["docker", "local"])
def test_rabbitmq_gives_each_worker_a_vhost_purged_between_tests(
    backend: str, backend_env: str, pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = _project(pytester.path / "app", TESTS, backend_env, monkeypatch)
    result = project.run("-v", "-n", "2")
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "7 passed" in out
    reports = project.reports()
    assert len(reports) == 6
    # One server for both workers, a vhost of each worker's own.
    assert len({r["address"] for r in reports}) == 1
    assert {r["backend"] for r in reports} == {backend_env}
    vhosts = {r["worker"]: r["vhost"] for r in reports}
    assert len(vhosts) == 2
    assert len(set(vhosts.values())) == 2
    assert all(v.startswith("pik_") for v in vhosts.values())
    assert all(r["url"].startswith("amqp://integration:") for r in reports)
    # Header and summary, derived from the spec.
    (header,) = [line for line in out.splitlines() if line.startswith("integration rabbitmq:")]
    assert f"image={TEST_IMAGE} (env)" in header
    (line,) = [s for s in out.split("integration services", 1)[1].splitlines() if "RabbitMQ" in s]
    found = re.search(rf"rabbitmq\s+{backend_env}\s+RabbitMQ (3\.\S+).*ready in ([\d.]+) s", line)
    assert found, line
    print(f"RabbitMQ {found[1]} on {backend_env}: ready in {found[2]} s")  # the issue asks
    # The marker selects.
    selected = project.run("-m", "requires_rabbitmq", "--strict-markers", "-q")
    assert selected.returncode == 0, selected.stdout
    assert "6 passed, 1 deselected" in selected.stdout
    # Nothing of the session is left behind.
    (session,) = {r["session"] for r in reports}
    assert leftovers(session).empty


@pytest.mark.parametrize("backend", ["docker", "local"])
def test_rabbitmq_of_a_killed_run_is_reaped(
    backend: str, backend_env: str, pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    dead = _project(pytester.path / "dead", HOLDING_TEST, backend_env, monkeypatch)
    process = dead.popen()
    wait_for(lambda: dead.reports() or process.poll() is not None, what="the RabbitMQ server")
    assert process.poll() is None, process.communicate()[0]
    (session,) = {r["session"] for r in dead.reports()}
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=30)
    before = leftovers(session)
    # Local: the broker and its own epmd, both found by their work directory.
    assert before.containers if backend_env == "docker" else len(before.processes) >= 2
    later = make_project(pytester.path / "later", "def test_nothing():\n    pass\n")
    result = later.run()
    assert result.returncode == 0, result.stdout
    assert leftovers(session).empty


def test_a_distribution_port_taken_before_the_broker_binds_it_is_retried(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The free port picked for Erlang's distribution can be taken by another process
    before the broker binds it (CI, 2026-12-07: ``dist_port_already_used``, the start
    failed): the start is tried again on new ports, as when the AMQP port is taken."""
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    taken = [int(holder.getsockname()[1])]  # the first pick: the distribution port
    pick = rabbitmq_service._free_port
    monkeypatch.setattr(
        rabbitmq_service, "_free_port", lambda *ports: taken.pop() if taken else pick(*ports)
    )
    options = ServerOptions(
        spec=RabbitMQSpec(), image="", startup_timeout=120, session_id="dist-taken"
    )
    try:
        server = LocalBackend().start(options)
        try:
            assert not taken  # the taken port was handed out, and the start got past it
            connection = pika.BlockingConnection(pika.URLParameters(server.endpoint.url))
            assert connection.is_open
            connection.close()
        finally:
            server.stop()
    finally:
        holder.close()


def test_two_local_rabbitmq_servers_side_by_side_never_meet() -> None:
    """Node names, AMQP, management, distribution and epmd ports are each server's own;
    a vhost purge on one leaves the other alone; stopping one stops its epmd too."""
    spec = RabbitMQSpec()
    backend = LocalBackend()
    servers: list[object] = []

    def start(session: str) -> None:
        options = ServerOptions(spec=spec, image="", startup_timeout=120, session_id=session)
        servers.append(backend.start(options))

    threads = [threading.Thread(target=start, args=(f"side{i}",)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=150)
    started = [s for s in servers if hasattr(s, "endpoint")]
    try:
        assert len(started) == 2
        first, second = (s.endpoint for s in started)  # type: ignore[attr-defined]
        assert first.port != second.port
        assert first.ports["management"] != second.ports["management"]
        a, b = RabbitVhost(first, owner="a"), RabbitVhost(second, owner="a")
        assert a.create().database == b.create().database == "pik_a"
        for endpoint, count in ((a.create(), 2), (b.create(), 1)):
            connection = pika.BlockingConnection(pika.URLParameters(endpoint.url))
            channel = connection.channel()
            channel.confirm_delivery()
            channel.queue_declare("q")
            for _ in range(count):
                channel.basic_publish("", "q", b"x")
            connection.close()
        assert a.purge() == 1
        connection = pika.BlockingConnection(pika.URLParameters(b.create().url))
        assert connection.channel().queue_declare("q", passive=True).method.message_count == 1
        connection.close()
    finally:
        workdirs = [s.workdir for s in started]  # type: ignore[attr-defined]
        for server in started:
            server.stop()  # type: ignore[attr-defined]
    assert not [pid for workdir in workdirs for pid in processes_under(workdir)]


@pytest.fixture(scope="module")
def broker() -> Iterator[RunningServer]:
    """A broker someone else runs, for the url backend's tests."""
    server = LocalBackend().start(
        ServerOptions(spec=RabbitMQSpec(), image="", startup_timeout=120, session_id="urlrmq")
    )
    yield server
    server.stop()


def test_rabbitmq_url_backend_makes_worker_vhosts_through_the_named_management_port(
    broker: RunningServer, pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server someone else runs: its URL says where the management API is."""
    endpoint = broker.endpoint
    url = f"{endpoint.url}?management_port={endpoint.ports['management']}"
    monkeypatch.setenv("INTEGRATION_MISSING", "fail")
    monkeypatch.setenv("INTEGRATION_RABBITMQ_BACKEND", "url")
    monkeypatch.setenv("INTEGRATION_RABBITMQ_URL", url)
    project = _project(pytester.path / "app", TESTS, "url", monkeypatch)
    result = project.run("-n", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    reports = project.reports()
    assert {r["address"] for r in reports} == {endpoint.address}
    assert {r["management"] for r in reports} == {endpoint.ports["management"]}
    assert len({r["vhost"] for r in reports}) == 2
    assert endpoint.password not in result.stdout + result.stderr
    # The workers' vhosts are gone; the server's own is left alone.
    names = {v["name"] for v in Management(endpoint).get("/api/vhosts")}
    assert names == {"/"}


def test_another_hosts_vhost_lives_while_renewed_and_is_deleted_after_its_lease(
    broker: RunningServer,
) -> None:
    """A CI job on another host holds a vhost on the shared broker and is killed."""
    endpoint = broker.endpoint
    url = f"{endpoint.url}?management_port={endpoint.ports['management']}"
    here = RabbitVhost(endpoint, lease_seconds=LEASE)
    with holder_elsewhere("rabbitmq", url, LEASE) as (process, made):
        time.sleep(2 * LEASE)  # its vhost's description is renewed meanwhile
        assert made["name"] not in here.reap_orphans()
        kill(process)
        assert made["name"] not in here.reap_orphans()  # its lease still runs
        time.sleep(LEASE + 1.5)
        assert made["name"] in here.reap_orphans()
    assert {v["name"] for v in Management(endpoint).get("/api/vhosts")} == {"/"}


def test_a_probe_of_a_server_not_up_yet_logs_nothing(caplog: pytest.LogCaptureFixture) -> None:
    """Readiness polls a starting broker: each refused attempt is an answer, and pika's
    ERROR lines for it would fill every failure report of the run."""
    from pytest_integration_kit.backends.ports import free_port  # noqa: PLC0415
    from pytest_integration_kit.services.endpoint import Endpoint  # noqa: PLC0415

    closed = Endpoint(
        service="rabbitmq", host="127.0.0.1", port=free_port(), user="u", password="p",
        database="/", backend="local", scheme="amqp",
    )  # fmt: skip
    with caplog.at_level("DEBUG", logger="pika"):
        with pytest.raises(pika.exceptions.AMQPError):
            RabbitMQSpec().probe(closed, 1.0)
        assert logging.getLogger("pika").level == logging.DEBUG  # restored after the probe
    assert [r for r in caplog.records if r.name.startswith("pika")] == []
