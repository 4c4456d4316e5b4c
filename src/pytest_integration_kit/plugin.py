"""The pytest glue: options, ini keys, markers, auto-marking, report lines.

Declarations only; every layer it calls knows nothing of pytest. The default fixtures
are instantiated from the public factories at the bottom.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import pytest

from pytest_integration_kit.errors import ConfigError
from pytest_integration_kit.fixtures.faults import fault_proxy_factory, network_guard_factory
from pytest_integration_kit.fixtures.isolation import (
    collect_worker_summary,
    follow_test_loop_scope,
    isolation_workspace_factory,
    mysql_async_session_factory,
    mysql_engine_factory,
    mysql_session_factory,
    postgres_async_session_factory,
    postgres_engine_factory,
    postgres_session_factory,
    redis_async_client_factory,
    redis_client_factory,
    summary_lines,
)
from pytest_integration_kit.fixtures.meta import fixture_metas
from pytest_integration_kit.fixtures.mocks import http_mock_factory, mock_server_factory
from pytest_integration_kit.fixtures.services import SERVER_SET, server_fixtures
from pytest_integration_kit.services import REGISTRY, spec_for
from pytest_integration_kit.settings import Setting, Settings, resolve_settings, settings_table

if TYPE_CHECKING:
    from collections.abc import Generator, Iterable

    from pytest_integration_kit.lifecycle.servers import ServerRequest
    from pytest_integration_kit.services.spec import ServiceSpec

SETTINGS_KEY = pytest.StashKey[Settings]()
#: The registry as it was before this run's conftests registered services.
REGISTRY_STATE_KEY = pytest.StashKey[dict[str, Any]]()
PYTEST_VERSION = tuple(pytest.version_tuple[:2])
#: The workerinput key carrying the controller's run to xdist workers.
RUN_KEY = "integration_kit_run"
#: Lines of server log attached to a failing test's report.
LOG_TAIL_LINES = 40

MARKERS = {
    "requires_network": "the test may open connections beyond the loopback interface",
    "slow": "the test takes seconds, not milliseconds",
    "http_mock": "http_mock(assert_all_called=True, assert_all_mocked=True, base_url=None, "
    "https=False): configure the http_mock and mock_server fixtures for this test",
    "isolation": "isolation(strategy): rollback, truncate or clone for this test's databases "
    "(default: integration_isolation)",
}


def _ini_type(setting: Setting) -> Any:
    """The ini type to register: whatever lets a native TOML value through to our parser.

    pytest >= 9.2 takes a union (strings first, so an ini file's text reaches us as
    written); 9.0 and 9.1 check ``[tool.pytest]`` values against one type; older pytest
    turns every scalar into a string. Lists are line lists everywhere.
    """
    if setting.kind == "list":
        return "linelist"
    if PYTEST_VERSION >= (9, 2):
        return str | bool | int | float
    if PYTEST_VERSION >= (9, 0):
        return {"bool": "bool", "int": "int", "float": "float"}.get(setting.kind, "string")
    return "string"


def pytest_addoption(parser: pytest.Parser) -> None:
    _add_settings(parser, settings_table())


def _add_settings(parser: pytest.Parser, settings: Iterable[Setting]) -> None:
    group = parser.getgroup("integration", "pytest-integration-kit")
    for setting in settings:
        where = f"Env {setting.env}, ini {setting.ini}."
        if setting.kind == "bool":
            group.addoption(
                setting.cli,
                action="store_true",
                dest=setting.dest,
                default=None,
                help=f"{setting.help} {where}",
            )
            group.addoption(
                setting.no_cli,
                action="store_false",
                dest=setting.dest,
                default=None,
                help=f"Turn {setting.cli} off (it wins over env and ini).",
            )
        else:
            group.addoption(
                setting.cli,
                dest=setting.dest,
                default=None,
                metavar=setting.metavar,
                help=f"{setting.help} Allowed: {setting.allowed}. {where}",
            )
        parser.addini(
            setting.ini,
            f"{setting.help} Allowed: {setting.allowed}.",
            type=_ini_type(setting),
            default=None,
        )


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config, parser: pytest.Parser) -> None:
    """Before the conftests load: a service they register gets its options and ini keys
    at once (pytest parses the command line after), and is forgotten after the run."""
    from pytest_integration_kit.settings import service_settings  # noqa: PLC0415

    early_config.stash[REGISTRY_STATE_KEY] = REGISTRY.snapshot()
    REGISTRY.open()

    def add(spec: ServiceSpec) -> None:
        _add_settings(parser, service_settings(spec))

    REGISTRY.subscribe(add)


def _settings_from(config: pytest.Config) -> Settings:
    table = settings_table()
    cli = {s.name: config.getoption(s.dest) for s in table}
    ini: dict[str, object] = {}
    errors: list[str] = []
    for setting in table:
        try:
            value = config.getini(setting.ini)
        except Exception as exc:  # pytest's own type check of a TOML value
            errors.append(
                f"{setting.ini}: {exc} (set by {setting.ini}); expected {setting.allowed}"
            )
            continue
        # pytest < 9 returns [] for an unset key whose default is None; an empty line
        # list is no entries, as if unset.
        ini[setting.name] = None if value == [] else value
    try:
        settings = resolve_settings(cli=cli, ini=ini, table=table)
    except ConfigError as exc:
        errors.append(str(exc))
    if errors:
        raise ConfigError("\n".join(errors))
    return settings


def service_markers() -> dict[str, str]:
    """``requires_<name>`` per registered service, and the markers they share."""
    markers: dict[str, str] = {}
    shared: dict[str, list[str]] = {}
    for spec in REGISTRY:
        markers[f"requires_{spec.name}"] = (
            f"the test uses a {spec.title} server (applied automatically)"
        )
        for marker in spec.markers[1:]:
            shared.setdefault(marker, []).append(spec.title)
    for marker, titles in shared.items():
        markers[marker] = f"the test uses a {' or '.join(titles)} server (applied automatically)"
    return markers


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    specs = REGISTRY.specs()
    if REGISTRY.problems:
        raise pytest.UsageError(
            "pytest-integration-kit: a service could not be registered\n"
            + "\n".join(REGISTRY.problems)
        )
    # Settings are resolved now: a service registered later could get none.
    REGISTRY.close("pytest_configure (the settings are resolved by then)")
    for name, description in {**service_markers(), **MARKERS}.items():
        config.addinivalue_line("markers", f"{name}: {description}")
    try:
        settings = _settings_from(config)
    except ConfigError as exc:
        raise pytest.UsageError(f"pytest-integration-kit: bad setting\n{exc}") from None
    config.stash[SETTINGS_KEY] = settings
    config.pluginmanager.register(server_fixtures(specs), "integration_kit_servers")

    from pytest_integration_kit.backends import default_backends  # noqa: PLC0415
    from pytest_integration_kit.lifecycle.servers import ServerSet  # noqa: PLC0415

    # An xdist worker joins the run its controller created; anyone else coordinates one.
    workerinput = getattr(config, "workerinput", None)
    servers = ServerSet.for_process(
        settings,
        backends=default_backends(),
        session_id=uuid.uuid4().hex[:12],
        shared=workerinput.get(RUN_KEY) if workerinput is not None else None,
        worker_id=str(workerinput["workerid"]) if workerinput is not None else "main",
        project=str(config.rootpath),
        cache_dir=settings["cache_dir"],
    )
    if servers.coordinator:
        servers.reap_dead_sessions(background=True)
    config.stash[SERVER_SET] = servers


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """xdist: tell each worker which run's servers to share."""
    servers = node.config.stash.get(SERVER_SET, None)
    if servers is not None:
        node.workerinput[RUN_KEY] = servers.share()


def pytest_unconfigure(config: pytest.Config) -> None:
    servers = config.stash.get(SERVER_SET, None)
    if servers is not None:
        servers.stop_all()
    state = config.stash.get(REGISTRY_STATE_KEY, None)
    if state is not None:
        REGISTRY.restore(state)


def pytest_report_header(config: pytest.Config) -> list[str]:
    """Each resolved setting and where it came from (cli, env, ini, default)."""
    settings = config.stash.get(SETTINGS_KEY, None)
    if settings is None:
        return []
    general: list[str] = []
    per_service: dict[str, list[str]] = {spec.name: [] for spec in REGISTRY}
    for resolved in settings:
        name = resolved.setting.name
        service = next((s for s in per_service if name.startswith(f"{s}_")), None)
        if service is not None:
            per_service[service].append(f"{name[len(service) + 1 :]}={resolved.describe()}")
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


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item) -> Generator[None, Any, None]:
    """A failing test's report carries the tail of the logs of the servers it used."""
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if not report.failed:
        return
    servers = item.config.stash.get(SERVER_SET, None)
    if servers is None:
        return
    requests = {meta.server: None for meta in fixture_metas(item) if meta.server is not None}
    for request in requests:
        tail = servers.log_tail(request, LOG_TAIL_LINES)
        if tail:
            title = f"integration {request.service} server log (last {LOG_TAIL_LINES} lines)"
            report.sections.append((title, tail))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Per server of the run: backend, version, address, start time, reuse hit or not."""
    isolation = summary_lines(terminalreporter.config)
    if isolation:
        terminalreporter.section("integration isolation")
        for line in isolation:
            terminalreporter.write_line(line)
    servers = terminalreporter.config.stash.get(SERVER_SET, None)
    if servers is None:
        return
    records = servers.summary()
    reaped = servers.reaping_done()
    if not records and not reaped and not servers.notes:
        return
    terminalreporter.section("integration services")
    for note in servers.notes:
        terminalreporter.write_line(f"note: {note}", yellow=True)
    for record in records:
        endpoint = record.endpoint_object()
        title = spec_for(endpoint.service).title
        if "mariadb" in endpoint.version.lower():
            title = "MariaDB"
        if record.reused:
            how = f"reused (kept), attached in {record.seconds_to_ready:.2f} s"
        else:
            how = f"ready in {record.seconds_to_ready:.2f} s" + (", kept" if record.kept else "")
        by = f" [{record.started_by}]" if record.started_by != "main" else ""
        terminalreporter.write_line(
            f"{endpoint.service:<9} {record.backend:<7} {title + ' ' + endpoint.version:<28} "
            f"{endpoint.address:<22} {how}{by}"
        )
    if reaped:
        terminalreporter.write_line(f"reaped from dead sessions: {reaped.describe()}")


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    """xdist controller: a worker finished; keep what its isolation did for the summary."""
    collect_worker_summary(node.config, getattr(node, "workeroutput", {}))


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_fixture_setup(fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest) -> Any:
    """Async isolation fixtures run in the test's event loop (set before pytest-asyncio looks)."""
    follow_test_loop_scope(fixturedef, request)
    return (yield)


# Each registered service's <name>_server fixture is registered in pytest_configure.
http_mock = http_mock_factory()
mock_server = mock_server_factory()
fault_proxy = fault_proxy_factory()
integration_network_guard = network_guard_factory()
isolation_workspace = isolation_workspace_factory()
postgres_engine = postgres_engine_factory()
mysql_engine = mysql_engine_factory()
postgres_session = postgres_session_factory()
mysql_session = mysql_session_factory()
postgres_async_session = postgres_async_session_factory()
mysql_async_session = mysql_async_session_factory()
redis_client = redis_client_factory()
redis_async_client = redis_async_client_factory()
