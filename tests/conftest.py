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
    }
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.name in HOST_WIDE:
            item.add_marker(pytest.mark.xdist_group("host-wide"))


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
