"""The pytest glue: options, ini keys, markers, auto-marking, report lines.

Declarations only; every layer it calls knows nothing of pytest. The default fixtures
are instantiated from the public factories at the bottom.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from pytest_integration_kit.fixtures.app_classes import load_app_classes
from pytest_integration_kit.fixtures.apps import (
    app_client_factory,
    app_host_factory,
    live_server_factory,
    query_counter_factory,
)
from pytest_integration_kit.fixtures.assertion_rewriting import import_without_rewriting
from pytest_integration_kit.fixtures.async_defaults import async_fixtures
from pytest_integration_kit.fixtures.autouse import per_test_fixtures
from pytest_integration_kit.fixtures.binding import load_sessionmakers
from pytest_integration_kit.fixtures.connections import (
    mysql_connection_factory,
    postgres_connection_factory,
)
from pytest_integration_kit.fixtures.environment import (
    database_fixture_factory,
    prepare_environment,
    restore_environment,
)
from pytest_integration_kit.fixtures.faults import fault_proxy_factory
from pytest_integration_kit.fixtures.isolation import (
    collect_worker_summary,
    follow_test_loop_scope,
    isolation_workspace_factory,
    mysql_engine_factory,
    mysql_session_factory,
    postgres_engine_factory,
    postgres_session_factory,
)
from pytest_integration_kit.fixtures.load import LoadReport, load_fixture_factory
from pytest_integration_kit.fixtures.meta import implied_marks, servers_needed
from pytest_integration_kit.fixtures.mocks import http_mock_factory, mock_server_factory
from pytest_integration_kit.fixtures.rabbitmq import (
    rabbitmq_connection_factory,
    rabbitmq_vhost_factory,
    rabbitmq_vhosts_fixture,
)
from pytest_integration_kit.fixtures.redis_clients import redis_client_factory
from pytest_integration_kit.fixtures.redis_guard import RedisWipes, settle_cleans
from pytest_integration_kit.fixtures.run_report import (
    REPORT_KEY,
    MissingServerTally,
    add_server_logs,
    say_decisions,
    write_summary,
)
from pytest_integration_kit.fixtures.run_servers import (
    RUN_KEY,
    set_up_servers,
    start_needed_servers,
    stop_servers,
)
from pytest_integration_kit.fixtures.services import (
    MAKE_SERVER_SET,
    SETTINGS,
    server_fixtures,
    server_set,
)
from pytest_integration_kit.fixtures.setup_request import hand_over, take_back
from pytest_integration_kit.fixtures.startup_checks import (
    check_before_start,
    check_registered_services,
    read_settings,
)
from pytest_integration_kit.reporting.header import header_line, settings_table
from pytest_integration_kit.reporting.summary import RunReport
from pytest_integration_kit.services import REGISTRY
from pytest_integration_kit.settings import Setting, service_settings
from pytest_integration_kit.settings import settings_table as all_settings

if TYPE_CHECKING:
    from collections.abc import Generator, Iterable

    from pytest_integration_kit.services.spec import ServiceSpec

SETTINGS_KEY = SETTINGS
#: The registry as it was before this run's conftests registered services.
REGISTRY_STATE_KEY = pytest.StashKey[dict[str, Any]]()
PYTEST_VERSION = tuple(pytest.version_tuple[:2])


# pytest marks every module of a plugin's distribution for assertion rewriting; the kit's
# modules imported from here on (some in its own threads) are imported as Python does.
# Again at each session's start: a later session in this process marks them anew.
import_without_rewriting(__name__.split(".", 1)[0])

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
    _add_settings(parser, all_settings())


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


def pytest_load_initial_conftests(early_config: pytest.Config, parser: pytest.Parser) -> None:
    """Before the conftests load: a service they register gets its options and ini keys
    at once (pytest parses the command line after), and is forgotten after the run.

    integration_env: start what it names and set its variables before conftest import
    (so it can name the services of installed packages, not those of conftests).
    The kit's modules are unmarked for assertion rewriting again (see above).
    """
    import_without_rewriting(__name__.split(".", 1)[0])
    early_config.stash[REGISTRY_STATE_KEY] = REGISTRY.snapshot()
    REGISTRY.open()

    def add(spec: ServiceSpec) -> None:
        _add_settings(parser, service_settings(spec))

    REGISTRY.subscribe(add)
    namespace = early_config.known_args_namespace
    if getattr(namespace, "help", False) or getattr(namespace, "version", False):
        return
    prepare_environment(early_config, read_settings(early_config, namespace))


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    specs = REGISTRY.specs()
    check_registered_services()
    # Settings are resolved now: a service registered later could get none.
    REGISTRY.close("pytest_configure (the settings are resolved by then)")
    for name, description in {**REGISTRY.markers(), **MARKERS}.items():
        config.addinivalue_line("markers", f"{name}: {description}")
    config.stash[SETTINGS_KEY] = settings = read_settings(config)
    config.pluginmanager.register(server_fixtures(specs), "integration_kit_servers")
    config.pluginmanager.register(async_fixtures(), "integration_kit_async_fixtures")
    config.pluginmanager.register(per_test_fixtures(settings), "integration_kit_per_test")
    if getattr(config, "workerinput", None) is None:  # once per run, not per xdist worker
        check_before_start(config, settings)
    set_up_servers(config, settings)
    config.stash[REPORT_KEY] = report = RunReport()
    config.pluginmanager.register(MissingServerTally(report), "integration-kit-tally")
    config.pluginmanager.register(LoadReport(config), "integration-kit-load")


def pytest_sessionstart(session: pytest.Session) -> None:
    """Import the app's sessionmakers and classes the settings name (bad ones: usage error)."""
    load_sessionmakers(session.config)
    load_app_classes(session.config)


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """xdist: tell each worker which run's servers to share."""
    if node.config.stash.get(MAKE_SERVER_SET, None) is not None:
        node.workerinput[RUN_KEY] = server_set(node.config).share()


def pytest_unconfigure(config: pytest.Config) -> None:
    """Stop the servers if the session did not get to (a usage error, an interrupt)."""
    stop_servers(config)
    restore_environment(config)
    state = config.stash.get(REGISTRY_STATE_KEY, None)
    if state is not None:
        REGISTRY.restore(state)


def pytest_report_header(config: pytest.Config) -> list[str]:
    """``-v``: every setting and its source. On xdist's controller, which does not
    collect: the changed settings. Otherwise the one line comes after collection."""
    settings = config.stash.get(SETTINGS_KEY, None)
    if settings is None:
        return []
    if int(config.option.verbose) > 0:
        return settings_table(settings)
    if config.pluginmanager.has_plugin("dsession"):
        line = header_line(settings, None)
        return [line] if line else []
    return []


def pytest_report_collectionfinish(config: pytest.Config, items: list[pytest.Item]) -> list[str]:
    """One line: the services the selected tests need, their backends, changed settings."""
    settings = config.stash.get(SETTINGS_KEY, None)
    if settings is None or int(config.option.verbose) < 0:
        return []
    line = header_line(settings, [request.service for request in servers_needed(items)])
    return [line] if line else []


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test from the fixtures in its closure: `-m requires_db` needs no hand-marking."""
    for item in items:
        for name in implied_marks(item):
            item.add_marker(name)


@pytest.hookimpl(trylast=True)
def pytest_collection_finish(session: pytest.Session) -> None:
    """Start, all at once, every server the selected tests need; none that they don't.

    Before the first test runs, says what is starting (and shows an image pull)."""
    start_needed_servers(session)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Tag a test skipped or errored for a missing server (for the summary), and attach
    a server's log tail where the failure involves that server, and the logs of the
    Compose services that went down (reporting.logtails)."""
    report = yield
    if call.excinfo is None and not report.failed:  # three times a test: nothing to add
        return report
    add_server_logs(item, call.excinfo.value if call.excinfo is not None else None, report)
    return report


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Stop the servers now (the summary says how long it took) and say each decision
    once, as an IntegrationKitWarning; one made an error by ``-W error`` fails the run."""
    config = session.config
    report = config.stash.get(REPORT_KEY, None)
    if report is None:
        return
    stop_servers(config)
    say_decisions(session, report)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Servers of the run, decisions made, services that were missing, teardown time."""
    write_summary(terminalreporter)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    """xdist controller: a worker finished; keep what its isolation did for the summary."""
    collect_worker_summary(node.config, getattr(node, "workeroutput", {}))


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Before the test's fixtures: the Redis cleans sent after the tests before it are done."""
    settle_cleans(item.config)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Any:
    """Warn if the test emptied a shared Redis server's db 0 (see RedisWipes for when)."""
    wipes = RedisWipes(item)
    result = yield
    for warning in wipes.warnings():
        item.warn(warning)
    return result


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_fixture_setup(fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest) -> Any:
    """Async isolation fixtures run in the test's event loop (set before pytest-asyncio
    looks); the kit's fixtures find their request without asking for it (setup_request)."""
    follow_test_loop_scope(fixturedef, request)
    token = hand_over(request)
    try:
        return (yield)
    finally:
        take_back(token)


# Registered in pytest_configure: each service's <name>_server fixture, the async ones.
http_mock = http_mock_factory()
mock_server = mock_server_factory()
fault_proxy = fault_proxy_factory()
isolation_workspace = isolation_workspace_factory()
postgres_engine = postgres_engine_factory()
mysql_engine = mysql_engine_factory()
postgres_session = postgres_session_factory()
mysql_session = mysql_session_factory()
postgres_connection = postgres_connection_factory()
mysql_connection = mysql_connection_factory()
redis_client = redis_client_factory()
postgres_database = database_fixture_factory(server="postgres_server")
mysql_database = database_fixture_factory(server="mysql_server")
redis_database = database_fixture_factory(server="redis_server")
integration_rabbitmq_vhosts = rabbitmq_vhosts_fixture()
rabbitmq_vhost = rabbitmq_vhost_factory()
rabbitmq_connection = rabbitmq_connection_factory()
integration_app_host = app_host_factory()
app_client = app_client_factory()
live_server = live_server_factory()
query_counter = query_counter_factory()
load = load_fixture_factory()
