"""Shared test fixtures: run a user's project through pytester on each backend.

The inner pytest runs see the same environment as a user's would: the backend is
chosen with INTEGRATION_BACKEND, the docker backend uses the offline test images
(built by scripts/build-test-images), and the url backend points at real servers —
those .ci/run started (PIK_TEST_<SERVICE>_URL) or, when absent, ones this session
starts with the library's own local backend.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

# In-process pytester runs restore sys.modules afterwards. A driver first imported inside
# one would be imported anew after it, while its C extension keeps the first copy's
# exception classes: SQLAlchemy then no longer recognises psycopg's errors. Importing the
# native drivers here puts them in every snapshot's baseline.
import asyncpg  # noqa: F401
import psycopg  # noqa: F401
import pymysql  # noqa: F401
import pytest
import redis  # noqa: F401
import sqlalchemy  # noqa: F401

from pytest_integration_kit.backends.base import RunningServer, ServerOptions
from pytest_integration_kit.backends.local import LocalBackend
from pytest_integration_kit.services import spec_for

#: The offline images our CI builds; users keep the official defaults.
TEST_IMAGES = {
    "postgres": "pytest-integration-kit/postgres:15",
    "mysql": "pytest-integration-kit/mysql:10.11",
    "redis": "pytest-integration-kit/redis:7",
}
ALL_BACKENDS = ("docker", "local", "url")
# Read once, before the autouse fixture below hides CI from the tests' inner runs.
if os.environ.get("CI"):
    os.environ["PIK_TEST_STRICT"] = "1"
SERVICES = ("postgres", "mysql", "redis")


#: Modules whose tests kill runs and look at what is left, reap, or list and remove kept
#: servers: every run on the host reaps dead sessions and sees every kept server, so
#: one xdist worker runs all of these, one after another (nox: ``--dist loadgroup``).
HOST_WIDE = frozenset(
    {
        "test_compose.py",
        "test_kept_databases.py",
        "test_kept_remove.py",
        "test_log_tails.py",
        "test_podman.py",
        "test_rabbitmq.py",
        "test_reaping.py",
        "test_reuse.py",
        "test_service_plugins.py",
        "test_shared_paths.py",
        "test_sharing.py",
        "test_warm.py",
        "test_warm_docker.py",
        "test_warm_start.py",
    }
)


def _host_wide(nodeid: str) -> bool:
    return nodeid.split("::", 1)[0].rsplit("/", 1)[-1] in HOST_WIDE


@pytest.hookimpl(optionalhook=True)  # xdist's hook: unknown where xdist is not installed
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``--dist loadgroup`` with the host-wide modules as one group, by file name.

    Not by ``xdist_group`` marks: xdist 3.8 groups by an ``@group`` suffix it writes into
    ``item._nodeid``, which pytest 9.2 no longer reads, so the marks grouped nothing
    and host-wide tests ran on both workers at once (CI, 2026-12-06).
    """
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadGroupScheduling  # noqa: PLC0415 - only under xdist

    class HostWideScheduling(LoadGroupScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            return "host-wide" if _host_wide(nodeid) else str(super()._split_scope(nodeid))

    return HostWideScheduling(config, log)


@pytest.fixture(autouse=True)
def _host_wide_tests_share_one_worker(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Fail a host-wide test that runs on another worker than the first one did: the
    grouping above has stopped working, and the tests would see each other's servers."""
    workerinput = getattr(request.config, "workerinput", None)  # only in xdist workers
    if workerinput is None or not _host_wide(request.node.nodeid):
        return
    worker = str(workerinput["workerid"])
    record = tmp_path_factory.getbasetemp().parent / "host-wide-worker"
    try:
        fd = os.open(record, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        first = record.read_text()
        assert first in ("", worker), f"host-wide tests ran on {first} and {worker}"
    else:
        os.write(fd, worker.encode())
        os.close(fd)


def selected_backends() -> list[str]:
    raw = os.environ.get("PIK_TEST_BACKENDS", ",".join(ALL_BACKENDS))
    return [b.strip() for b in raw.split(",") if b.strip()]


@pytest.fixture(scope="session")
def url_servers() -> Iterator[dict[str, str]]:
    """URLs of running servers for the url backend, one per service."""
    started: list[RunningServer] = []
    urls: dict[str, str] = {}
    backend = LocalBackend()
    try:
        for service in SERVICES:
            given = os.environ.get(f"PIK_TEST_{service.upper()}_URL")
            if given:
                urls[service] = given
                continue
            server = backend.start(
                ServerOptions(
                    spec=spec_for(service),
                    image="",
                    startup_timeout=60,
                    session_id="tests-url",
                )
            )
            started.append(server)
            urls[service] = server.endpoint.url
        yield urls
    finally:
        for server in started:
            server.stop()


@pytest.fixture(params=selected_backends())
def backend(request: pytest.FixtureRequest) -> str:
    """Each backend in turn (PIK_TEST_BACKENDS narrows the list)."""
    return str(request.param)


@pytest.fixture
def backend_env(
    backend: str, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> str:
    """Set the environment so an inner pytest run uses ``backend`` for every service."""
    monkeypatch.setenv("INTEGRATION_BACKEND", backend)
    for service in SERVICES:
        key = service.upper()
        monkeypatch.delenv(f"INTEGRATION_{key}_BACKEND", raising=False)
        monkeypatch.delenv(f"INTEGRATION_{key}_URL", raising=False)
        monkeypatch.setenv(f"INTEGRATION_{key}_IMAGE", TEST_IMAGES[service])
    if backend == "url":
        urls = request.getfixturevalue("url_servers")
        for service, url in urls.items():
            monkeypatch.setenv(f"INTEGRATION_{service.upper()}_URL", url)
    # Strict, as in CI: a backend that cannot start fails the inner run.
    monkeypatch.setenv("INTEGRATION_MISSING", "fail")
    return backend


@pytest.fixture(autouse=True)
def _clean_integration_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Inner runs start from a user's blank slate, not from this run's settings."""
    for name in list(os.environ):
        # An outer xdist worker's variables would make an inner run believe it is one.
        if name.startswith(("INTEGRATION_", "PYTEST_XDIST_")):
            monkeypatch.delenv(name)
    # CI's variables change inner runs' defaults (integration_missing=fail) and pytest's
    # output (untruncated summary lines): inner runs get a laptop's, and a test that is
    # about CI sets CI itself. Whether *this* run is strict is PIK_TEST_STRICT.
    for name in ("CI", "BUILD_NUMBER"):
        monkeypatch.delenv(name, raising=False)
