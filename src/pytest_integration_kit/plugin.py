"""The pytest glue: options, ini keys, markers, auto-marking, report lines.

Declarations only; every layer it calls knows nothing of pytest. The default fixtures
are instantiated from the public factories at the bottom.
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any

import pytest

from pytest_integration_kit.errors import ConfigError, IntegrationKitWarning
from pytest_integration_kit.fixtures.app_classes import load_app_classes
from pytest_integration_kit.fixtures.apps import (
    app_client_factory,
    app_host_factory,
    live_server_factory,
    query_counter_factory,
)
from pytest_integration_kit.fixtures.async_defaults import async_fixtures
from pytest_integration_kit.fixtures.autouse import per_test_fixtures
from pytest_integration_kit.fixtures.binding import load_sessionmakers
from pytest_integration_kit.fixtures.connections import (
    mysql_connection_factory,
    postgres_connection_factory,
)
from pytest_integration_kit.fixtures.environment import (
    REAPING,
    database_fixture_factory,
    make_server_set,
    prepare_environment,
    restore_environment,
    start_reaping,
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
    summary_lines,
)
from pytest_integration_kit.fixtures.load import LoadReport, load_fixture_factory
from pytest_integration_kit.fixtures.meta import fixture_metas
from pytest_integration_kit.fixtures.mocks import http_mock_factory, mock_server_factory
from pytest_integration_kit.fixtures.prepare import close_prepared, prepare_databases
from pytest_integration_kit.fixtures.rabbitmq import (
    rabbitmq_connection_factory,
    rabbitmq_vhost_factory,
    rabbitmq_vhosts_fixture,
)
from pytest_integration_kit.fixtures.redis_clients import redis_client_factory
from pytest_integration_kit.fixtures.redis_guard import RedisWipes, settle_cleans
from pytest_integration_kit.fixtures.services import (
    MAKE_SERVER_SET,
    SERVER_SET,
    SETTINGS,
    UNAVAILABLE_ATTR,
    server_fixtures,
    server_set,
)
from pytest_integration_kit.fixtures.setup_request import hand_over, take_back
from pytest_integration_kit.reporting.header import header_line, settings_table
from pytest_integration_kit.reporting.summary import RunReport, stopped_line
from pytest_integration_kit.services import REGISTRY, spec_for
from pytest_integration_kit.settings import (
    Setting,
    Settings,
    conflicts,
    resolve_settings,
    service_settings,
)
from pytest_integration_kit.settings import settings_table as all_settings

if TYPE_CHECKING:
    from collections.abc import Generator, Iterable

    from pytest_integration_kit.lifecycle.requests import ServerRequest
    from pytest_integration_kit.lifecycle.servers import ServerSet
    from pytest_integration_kit.reporting.progress import Progress
    from pytest_integration_kit.services.spec import ServiceSpec

SETTINGS_KEY = SETTINGS
#: The registry as it was before this run's conftests registered services.
REGISTRY_STATE_KEY = pytest.StashKey[dict[str, Any]]()
#: What the end summary says, gathered during the run.
REPORT_KEY = pytest.StashKey[RunReport]()
PROGRESS_KEY = pytest.StashKey["Progress"]()
STOPPED_KEY = pytest.StashKey[bool]()
PYTEST_VERSION = tuple(pytest.version_tuple[:2])
#: The workerinput key carrying the controller's run to xdist workers.
RUN_KEY = "integration_kit_run"


def _import_without_rewriting(package: str = __name__.split(".", 1)[0]) -> None:
    """Import the kit's modules from here on as Python does, not through pytest's
    assertion rewriting (pytest marks every module of a plugin's distribution).

    The kit imports modules on first use, some in its own threads (a server's start,
    the reaper) while the main thread imports others. Rewriting parses each module with
    ``ast.parse``, and CPython before 3.11.9 / 3.12.3 corrupts its AST recursion count
    when two threads do that at once ("SystemError: AST constructor recursion depth
    mismatch", gh-106905); the kit's own asserts need no rewriting. pytest has no
    public way to unmark a name: where its hook is not as expected, nothing changes.
    """
    for finder in sys.meta_path:
        marked = getattr(finder, "_must_rewrite", None)
        cache = getattr(finder, "_marked_for_rewrite_cache", None)
        if isinstance(marked, set) and package in marked and isinstance(cache, dict):
            marked.discard(package)
            cache.clear()


_import_without_rewriting()

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


def _settings_from(config: pytest.Config, namespace: Any = None) -> Settings:
    table = all_settings()
    if namespace is not None:  # before the command line is fully parsed
        cli = {s.name: getattr(namespace, s.dest, None) for s in table}
    else:
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


def pytest_load_initial_conftests(early_config: pytest.Config, parser: pytest.Parser) -> None:
    """Before the conftests load: a service they register gets its options and ini keys
    at once (pytest parses the command line after), and is forgotten after the run.

    integration_env: start what it names and set its variables before conftest import
    (so it can name the services of installed packages, not those of conftests).
    """
    early_config.stash[REGISTRY_STATE_KEY] = REGISTRY.snapshot()
    REGISTRY.open()

    def add(spec: ServiceSpec) -> None:
        _add_settings(parser, service_settings(spec))

    REGISTRY.subscribe(add)
    namespace = early_config.known_args_namespace
    if getattr(namespace, "help", False) or getattr(namespace, "version", False):
        return
    try:
        settings = _settings_from(early_config, namespace)
    except ConfigError as exc:
        raise pytest.UsageError(f"pytest-integration-kit: bad setting\n{exc}") from None
    prepare_environment(early_config, settings)


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
    config.pluginmanager.register(async_fixtures(), "integration_kit_async_fixtures")
    config.pluginmanager.register(per_test_fixtures(settings), "integration_kit_per_test")
    if getattr(config, "workerinput", None) is None:  # once per run, not per xdist worker
        _check_before_start(config, settings)
    # Made before conftest import when integration_env names servers; else when first
    # needed (after collection, by a fixture, for xdist's workers). An xdist worker
    # joins the run its controller created; anyone else coordinates one, and reaps.
    workerinput = getattr(config, "workerinput", None)
    shared = workerinput.get(RUN_KEY) if workerinput is not None else None
    config.stash[MAKE_SERVER_SET] = lambda: _make_servers(config, settings, shared)
    if shared is None:
        start_reaping(config, settings)
    if settings["reuse"]:  # its cache dir is checked now: a usage error at start-up
        server_set(config)
    config.stash[REPORT_KEY] = report = RunReport()
    config.pluginmanager.register(_Tally(report), "integration-kit-tally")
    config.pluginmanager.register(LoadReport(config), "integration-kit-load")


def _make_servers(config: pytest.Config, settings: Settings, shared: Any) -> ServerSet:
    """The run's ServerSet, made on first need; it reports progress from then on (once
    the terminal is there: not yet when integration_reuse makes it at configure)."""
    servers = make_server_set(config, settings, shared)
    if config.pluginmanager.get_plugin("terminalreporter") is not None:
        _progress(config, servers)
    return servers


def _check_before_start(config: pytest.Config, settings: Settings) -> None:
    """What needs no server, checked before any starts: a usage error, or a warning."""
    if settings["schema"] or settings["alembic_config"] or settings["seed"]:
        # Imported here: with none of the three set there is nothing to check.
        from pytest_integration_kit.isolation.schema import SchemaSource  # noqa: PLC0415

        source = SchemaSource(
            schema=settings["schema"],
            alembic_config=settings["alembic_config"],
            seed=tuple(settings["seed"] or ()),
            root=config.rootpath,
        )
        try:
            source.check()
        except ConfigError as exc:
            raise pytest.UsageError(f"pytest-integration-kit: bad setting\n{exc}") from None
    for message in conflicts(settings):
        try:
            config.issue_config_time_warning(IntegrationKitWarning(message), stacklevel=2)
        except IntegrationKitWarning:  # filterwarnings = error: said as a usage error
            raise pytest.UsageError(f"pytest-integration-kit: {message}") from None


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
    _stop_servers(config)
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
    needed = [m.server.service for item in items for m in fixture_metas(item) if m.server]
    line = header_line(settings, needed)
    return [line] if line else []


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test from the fixtures in its closure: `-m requires_db` needs no hand-marking."""
    for item in items:
        names = {mark for meta in fixture_metas(item) for mark in meta.marks}
        for name in sorted(names):
            item.add_marker(name)


@pytest.hookimpl(trylast=True)
def pytest_collection_finish(session: pytest.Session) -> None:
    """Start, all at once, every server the selected tests need; none that they don't.

    Before the first test runs, says what is starting (and shows an image pull)."""
    if session.config.option.collectonly:
        return
    if session.config.stash.get(MAKE_SERVER_SET, None) is None:
        return
    needed: dict[ServerRequest, None] = {}
    for item in session.items:
        for meta in fixture_metas(item):
            if meta.server is not None:
                needed[meta.server] = None
    if not needed:
        return  # no ServerSet: a fixture asking for a server later makes it
    servers = server_set(session.config)
    progress = _progress(session.config, servers)
    servers.start_all(needed)
    prepare_databases(session, servers)
    # Waiting only orders the "starting …" lines before the first test's: with none to
    # print (-q, an xdist worker) the first test's set-up goes on at once.
    while progress.enabled and any(
        not servers.done(r) and r.service not in progress.announced for r in needed
    ):
        time.sleep(0.02)
        progress.flush()
    progress.flush()


def _isatty(reporter: Any) -> bool:
    """``TerminalReporter.isatty``: a bool before pytest 8, callable since."""
    isatty = reporter.isatty
    return bool(isatty() if callable(isatty) else isatty)


def _progress(config: pytest.Config, servers: ServerSet) -> Progress:
    """This process's progress printer, wired to the servers' events (quiet with -q)."""
    progress = config.stash.get(PROGRESS_KEY, None)
    if progress is not None:
        return progress
    # Imported here, as below: only a run that starts servers shows progress.
    from pytest_integration_kit.reporting.progress import Progress  # noqa: PLC0415

    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None or getattr(config, "workerinput", None) is not None:
        progress = Progress(lambda line: None, enabled=False)
    else:
        progress = Progress(
            reporter.write_line,
            (lambda line: reporter.rewrite(line, erase=True)) if _isatty(reporter) else None,
            verbose=int(config.option.verbose) > 0,
            enabled=int(config.option.verbose) >= 0,
        )
    servers.on_progress = progress.event
    servers.on_wait = progress.flush
    config.stash[PROGRESS_KEY] = progress
    return progress


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
    exc = call.excinfo.value if call.excinfo is not None else None
    unavailable = getattr(exc, UNAVAILABLE_ATTR, None)
    if unavailable is not None:
        setattr(report, UNAVAILABLE_ATTR, unavailable)  # crosses to xdist's controller
        return report
    servers = item.config.stash.get(SERVER_SET, None)
    if not report.failed or servers is None:
        return report
    from pytest_integration_kit.reporting.logtails import (  # noqa: PLC0415
        LOG_TAIL_LINES,
        compose_log_sections,
        wants_log_tail,
    )

    verbose = int(item.config.option.verbose)
    report.sections += compose_log_sections(getattr(item, "funcargs", {}), verbose)
    for request in {m.server: None for m in fixture_metas(item) if m.server is not None}:
        server = servers.started(request)
        packages = spec_for(request.service).driver_packages
        if server is None or not wants_log_tail(
            exc=exc, packages=packages, server=server, verbose=verbose
        ):
            continue
        tail = servers.log_tail(request, LOG_TAIL_LINES)
        if tail:
            title = f"integration {request.service} server log (last {LOG_TAIL_LINES} lines)"
            report.sections.append((title, tail))
    return report


class _Tally:
    """Counts, from every test report (all workers' on xdist's controller), the tests a
    missing server cost."""

    def __init__(self, report: RunReport) -> None:
        self.report = report

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        unavailable = getattr(report, UNAVAILABLE_ATTR, None)
        if isinstance(unavailable, dict) and report.when == "setup":
            self.report.tally.add(unavailable)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Stop the servers now (the summary says how long it took) and say each decision
    once, as an IntegrationKitWarning; one made an error by ``-W error`` fails the run."""
    config = session.config
    report = config.stash.get(REPORT_KEY, None)
    if report is None:
        return
    _stop_servers(config)
    servers = config.stash.get(SERVER_SET, None)
    if servers is not None and servers.stop_failures and session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED  # a server is left running
    if getattr(config, "workerinput", None) is not None:
        return  # the controller says it, once for the run
    for text in report.warnings():
        try:
            config.issue_config_time_warning(IntegrationKitWarning(text), stacklevel=2)
        except IntegrationKitWarning:
            report.warning_errors.append(text)
    if report.warning_errors and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def _stop_servers(config: pytest.Config) -> None:
    """Stop this process's servers once, timed; first keep what the summary needs."""
    servers = config.stash.get(SERVER_SET, None)
    report = config.stash.get(REPORT_KEY, None)
    if report is None or config.stash.get(STOPPED_KEY, False):
        return
    if servers is None:  # no test needed one: only the reaper's pass to wait for
        reaping = config.stash.get(REAPING, None)
        if reaping is not None:
            config.stash[STOPPED_KEY] = True
            reaped = reaping.done()
            report.reaped = reaped.describe() if reaped else ""
        return
    config.stash[STOPPED_KEY] = True
    restore_environment(config)  # its workspace holds databases on these servers
    close_prepared(config)  # so does the one made after collection, if no test took it
    servers.settle()
    report.records = servers.summary()
    report.notes = list(servers.notes)
    reaped = servers.reaping_done()
    report.reaped = reaped.describe() if reaped else ""
    count = kept = 0
    if servers.coordinator:
        count = sum(1 for r in report.records if not r.kept)
        kept = sum(1 for r in report.records if r.kept)
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if count and reporter is not None and _isatty(reporter) and int(config.option.verbose) >= 0:
        reporter.write_line(f"integration: stopping {count} server(s)…")
    started = time.monotonic()
    servers.stop_all()
    report.stopped = stopped_line(count, kept, time.monotonic() - started)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Servers of the run, decisions made, services that were missing, teardown time."""
    config = terminalreporter.config
    isolation = summary_lines(config)
    if isolation:
        terminalreporter.section("integration isolation")
        for line in isolation:
            terminalreporter.line(line)
    report = config.stash.get(REPORT_KEY, None)
    if report is None:
        return
    lines = report.lines()
    servers = config.stash.get(SERVER_SET, None)
    failures = servers.stop_failures if servers is not None else []
    if lines or report.notes or failures:
        terminalreporter.section("integration services")
        for note in report.notes:
            terminalreporter.line(f"note: {note}", yellow=True)
        for failure in failures:
            terminalreporter.line(f"warning: could not stop, still running: {failure}", red=True)
        if failures:
            terminalreporter.line(
                "the next run on this host removes them (their owner is gone); exit status 1",
                red=True,
            )
        for line in lines:
            terminalreporter.line(line)
        # Each line above ended itself: no blank line before pytest's closing one.
        terminalreporter.currentfspath = None


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
