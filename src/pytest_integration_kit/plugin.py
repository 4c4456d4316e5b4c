"""The pytest glue: options, ini keys, markers, auto-marking, report lines.

Declarations only; every layer it calls knows nothing of pytest. The default fixtures
are instantiated from the public factories at the bottom.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import pytest

from pytest_integration_kit.errors import ConfigError
from pytest_integration_kit.fixtures.meta import fixture_metas
from pytest_integration_kit.fixtures.services import (
    SERVER_SET,
    mysql_server_factory,
    postgres_server_factory,
    redis_server_factory,
)
from pytest_integration_kit.services import spec_for
from pytest_integration_kit.settings import SERVICES, SETTINGS, Settings, resolve_settings

if TYPE_CHECKING:
    from pytest_integration_kit.lifecycle.servers import ServerRequest

SETTINGS_KEY = pytest.StashKey[Settings]()

MARKERS = {
    "requires_db": "the test uses a PostgreSQL or MySQL server (applied automatically)",
    "requires_redis": "the test uses a Redis server (applied automatically)",
    "requires_network": "the test may open connections beyond the loopback interface",
    "slow": "the test takes seconds, not milliseconds",
}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("integration", "pytest-integration-kit")
    for setting in SETTINGS:
        group.addoption(
            setting.cli,
            dest=setting.dest,
            default=None,
            metavar=setting.metavar,
            help=f"{setting.help} Env {setting.env}, ini {setting.ini}.",
        )
        parser.addini(setting.ini, setting.help, type="string", default=None)


def _settings_from(config: pytest.Config) -> Settings:
    cli = {s.name: config.getoption(s.dest) for s in SETTINGS}
    ini: dict[str, str | None] = {}
    for setting in SETTINGS:
        value = config.getini(setting.ini)
        # pytest < 9 returns [] for an unset string key whose default is None.
        ini[setting.name] = value if isinstance(value, str) else None
    return resolve_settings(cli=cli, ini=ini)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    for name, description in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {description}")
    try:
        settings = _settings_from(config)
    except ConfigError as exc:
        raise pytest.UsageError(f"pytest-integration-kit: bad setting\n{exc}") from None
    config.stash[SETTINGS_KEY] = settings

    from pytest_integration_kit.backends import default_backends  # noqa: PLC0415
    from pytest_integration_kit.lifecycle.servers import ServerSet  # noqa: PLC0415

    config.stash[SERVER_SET] = ServerSet(
        settings, session_id=uuid.uuid4().hex[:12], backends=default_backends()
    )


def pytest_unconfigure(config: pytest.Config) -> None:
    servers = config.stash.get(SERVER_SET, None)
    if servers is not None:
        servers.stop_all()


def pytest_report_header(config: pytest.Config) -> list[str]:
    """Each resolved setting and where it came from (cli, env, ini, default)."""
    settings = config.stash.get(SETTINGS_KEY, None)
    if settings is None:
        return []
    general: list[str] = []
    per_service: dict[str, list[str]] = {service: [] for service in SERVICES}
    for resolved in settings:
        name = resolved.setting.name
        service, _, key = name.partition("_")
        if service in per_service and key:
            per_service[service].append(f"{key}={resolved.describe()}")
        else:
            general.append(f"{name}={resolved.describe()}")
    lines = ["integration: " + ", ".join(general)]
    lines += [
        f"integration {service}: " + ", ".join(parts) for service, parts in per_service.items()
    ]
    return lines


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test from the fixtures in its closure: `-m requires_db` needs no hand-marking."""
    for item in items:
        names = {mark for meta in fixture_metas(item) for mark in meta.marks}
        for name in sorted(names):
            item.add_marker(name)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Start, all at once, every server the selected tests need; none that they don't."""
    if session.config.option.collectonly:
        return
    servers = session.config.stash.get(SERVER_SET, None)
    if servers is None:
        return
    needed: dict[ServerRequest, None] = {}
    for item in session.items:
        for meta in fixture_metas(item):
            if meta.server is not None:
                needed[meta.server] = None
    servers.start_all(needed)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    servers = terminalreporter.config.stash.get(SERVER_SET, None)
    if servers is None or not servers.records:
        return
    terminalreporter.section("integration services")
    for record in servers.records:
        endpoint = record.endpoint
        title = spec_for(endpoint.service).title
        if "mariadb" in endpoint.version.lower():
            title = "MariaDB"
        terminalreporter.write_line(
            f"{endpoint.service:<9} {record.backend:<7} {title + ' ' + endpoint.version:<28} "
            f"{endpoint.address:<22} ready in {record.seconds_to_ready:.2f} s"
        )


postgres_server = postgres_server_factory()
mysql_server = mysql_server_factory()
redis_server = redis_server_factory()
