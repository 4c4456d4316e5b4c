"""What a service is, independent of how it is run: the service spec."""

from __future__ import annotations

import copy
import os
import shutil
import signal
from abc import ABC, abstractmethod
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar
from urllib.parse import parse_qs, unquote, urlsplit

from pytest_integration_kit.errors import BackendUnavailable, MissingExtra

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    from pytest_integration_kit.backends.local_runner import LocalRunner
    from pytest_integration_kit.services.endpoint import Endpoint
    from pytest_integration_kit.services.launch import Credentials, LocalLaunch, WarmLaunch
    from pytest_integration_kit.settings import Setting

_Spec = TypeVar("_Spec", bound="ServiceSpec")

__all__ = [
    "Credentials",
    "LocalLaunch",
    "ServerContext",
    "ServiceSpec",
    "WarmLaunch",
    "find_executable",
]


if not TYPE_CHECKING:

    def __getattr__(name: str) -> object:
        """Credentials, LocalLaunch and WarmLaunch, from their module on first use (see
        launch)."""
        if name in ("Credentials", "LocalLaunch", "WarmLaunch"):
            from pytest_integration_kit.services import launch  # noqa: PLC0415

            return getattr(launch, name)
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class ServerContext:
    """What readiness may look at besides the endpoint: the server's log, and a command
    run where the server runs (in its container, or on this host for local). The url
    backend has neither (:attr:`available` False)."""

    available = False

    def log(self) -> str:
        return ""

    def run(self, command: Sequence[str], timeout: float) -> tuple[int, str]:
        raise NotImplementedError("the url backend runs no command where the server runs")


class ServiceSpec(ABC):
    """Everything the backends need to know about one kind of server.

    Subclass it and register an instance (:func:`~pytest_integration_kit.register_service`
    or the entry point group ``pytest_integration_kit.services``) to add a service; the
    built-in ones are
    :class:`~pytest_integration_kit.services.postgres.PostgresSpec`,
    :class:`~pytest_integration_kit.services.mysql.MySQLSpec` and
    :class:`~pytest_integration_kit.services.redis.RedisSpec`. A subclass sets the class
    attributes without defaults and implements :meth:`probe`; the docker backend needs
    nothing more, the local backend :meth:`find_binaries` and :meth:`prepare_local`.
    """

    #: Lower case: it names the settings (``integration_<name>_…``), the marker
    #: (``requires_<name>``) and the fixture (``<name>_server``).
    name: ClassVar[str]
    #: Human name used in messages and the start-up report.
    title: ClassVar[str]
    #: SQLAlchemy / client URL scheme with the default sync driver.
    scheme: ClassVar[str]
    container_port: ClassVar[int]
    #: The server's other ports by name → their number in the container (RabbitMQ's
    #: management API). Docker publishes each, the local backend gives each a free port
    #: (``runner.ports[name]`` in :meth:`prepare_local`), the url backend assumes these
    #: numbers; :attr:`Endpoint.ports` has them.
    extra_ports: ClassVar[dict[str, int]] = {}
    #: The image the docker backend runs unless ``integration_<name>_image`` says otherwise.
    default_image: ClassVar[str]
    #: URL schemes ``integration_<name>_url`` accepts (``scheme[+driver]://``); empty:
    #: just :attr:`scheme`.
    url_schemes: ClassVar[tuple[str, ...]] = ()
    #: A URL for the configuration reference; empty: made from the scheme and port.
    url_example: ClassVar[str] = ""
    #: Markers shared with other services (``requires_db`` for the SQL ones), applied
    #: besides ``requires_<name>``.
    group_markers: ClassVar[tuple[str, ...]] = ()
    default_user: ClassVar[str] = ""
    default_database: ClassVar[str] = ""
    #: The unprivileged OS user the local backend prefers when run as root.
    os_user: ClassVar[str] = "nobody"
    stop_signal: ClassVar[int] = signal.SIGTERM
    #: The local init command bakes the password into the data directory, so servers
    #: copied from one warm entry share it. False: each server sets its own at start.
    password_in_data_dir: ClassVar[bool] = False
    #: The extra that installs the driver the probe needs.
    extra: ClassVar[str] = ""
    #: Top-level packages whose exceptions mean a failure involved this server (the
    #: failing test's report then carries the tail of the server's log).
    driver_packages: ClassVar[tuple[str, ...]] = ()
    #: Keys of :meth:`extra_settings` that only servers the kit starts can honour
    #: (server options, extensions): set with the url backend, the kit says they do nothing.
    server_only_settings: ClassVar[tuple[str, ...]] = ()
    #: The resolved values of :meth:`extra_settings`, by key (the name without
    #: ``<name>_``): set on the copy :meth:`configured` returns, empty on the registered one.
    values: Mapping[str, Any] = MappingProxyType({})

    def configured(self: _Spec, values: Mapping[str, Any]) -> _Spec:
        """A copy of this spec carrying the run's values of its own settings."""
        clone = copy.copy(self)
        clone.values = MappingProxyType(dict(values))
        return clone

    def identity(self) -> list[str]:
        """What makes two servers of this spec differ beyond image and binaries: a kept
        server (``integration_reuse``) is reused only when this is equal."""
        return [f"{key}={self.values[key]!r}" for key in sorted(self.values)]

    def after_start(self, endpoint: Endpoint, where: str) -> None:
        """Called once on a server the kit started (docker, local), after it is ready and
        before anyone uses it; ``where`` describes it for messages (``docker image …``).
        Raises :class:`~pytest_integration_kit.errors.ServerStartError` to fail the start."""
        return  # nothing to do unless the spec says so

    @property
    def markers(self) -> tuple[str, ...]:
        """The markers a test using this service gets: ``requires_<name>`` first."""
        own = f"requires_{self.name}"
        return (own, *(m for m in self.group_markers if m != own))

    @property
    def accepted_url_schemes(self) -> tuple[str, ...]:
        return self.url_schemes or (self.scheme.split("+", 1)[0],)

    def extra_settings(self) -> Sequence[Setting]:
        """Settings of this service beyond backend, image, url and bin_dir; each named
        ``<name>_<key>``, so the report header shows it among the service's."""
        return ()

    def example_url(self) -> str:
        if self.url_example:
            return self.url_example
        return f"{self.accepted_url_schemes[0]}://127.0.0.1:{self.container_port}"

    def credentials(self, password: str | None = None) -> Credentials:
        """Who logs in: ``password`` when given, else a random one for this session."""
        import secrets  # noqa: PLC0415 - only a server started here needs a password

        from pytest_integration_kit.services.launch import Credentials  # noqa: PLC0415 - same

        chosen = secrets.token_urlsafe(18) if password is None else password
        return Credentials(self.default_user, chosen, self.default_database)

    def endpoint(
        self, *, host: str, port: int, credentials: Credentials, backend: str, version: str = ""
    ) -> Endpoint:
        from pytest_integration_kit.services.endpoint import Endpoint  # noqa: PLC0415 - a server's

        return Endpoint(
            service=self.name,
            host=host,
            port=port,
            user=credentials.user,
            password=credentials.password,
            database=credentials.database,
            backend=backend,
            scheme=self.scheme,
            version=version,
        )

    def endpoint_from_url(self, url: str) -> Endpoint:
        """An endpoint for a server someone else runs (the url backend)."""
        from pytest_integration_kit.services.endpoint import Endpoint  # noqa: PLC0415 - same

        parts = urlsplit(url)
        database = unquote(parts.path.lstrip("/")) or self.default_database
        # libpq and redis-py also take them as ``?user=…&password=…``.
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        user = unquote(parts.username) if parts.username is not None else query.get("user")
        password = unquote(parts.password) if parts.password is not None else None
        return Endpoint(
            service=self.name,
            host=parts.hostname or "127.0.0.1",
            port=parts.port or self.container_port,
            user=user if user is not None else self.default_user,
            password=password if password is not None else query.get("password", ""),
            database=database,
            backend="url",
            scheme=self.scheme,
            ports=dict(self.extra_ports),
        )

    # -- docker ---------------------------------------------------------------------

    def container_env(self, credentials: Credentials) -> dict[str, str]:
        """Environment for the image's contract (passwords, database names)."""
        return {}

    def container_command(self, credentials: Credentials) -> list[str] | None:
        """Command (or arguments) for the container; None keeps the image's."""
        return None

    def container_tmpfs(self) -> dict[str, str]:
        """tmpfs mounts for the data directory: test data need not survive."""
        return {}

    def host_network(self, port: int) -> tuple[dict[str, str], list[str]] | None:
        """Environment and arguments (added to the container's) that make the server
        listen on 127.0.0.1 at ``port`` and nowhere else, for a container in this
        machine's network (``integration_docker_host_network``); None, the default:
        the service cannot be told, and its containers stay on the bridge network."""
        return None

    #: Where a warm image (``integration_warm_start``) keeps the initialised data
    #: directory: a path outside the image's volumes and tmpfs mounts, which ``docker
    #: commit`` leaves out. None: the service has no warm image (nothing to initialise).
    warm_data_dir: ClassVar[str | None] = None

    def warm_container(
        self, credentials: Credentials, *, cached: bool
    ) -> tuple[dict[str, str], list[str]]:
        """Environment and command of a container whose data directory is
        :attr:`warm_data_dir`: the warm image's builder, or (``cached``) a start from it."""
        return self.container_env(credentials), list(self.container_command(credentials) or [])

    def warm_files(self, credentials: Credentials) -> dict[str, bytes]:
        """Files (path: content) put in a container started from a warm image before it
        starts: what sets this session's password before the server accepts clients."""
        return {}

    def warm_launch(
        self, credentials: Credentials, entrypoint: Sequence[str], command: Sequence[str]
    ) -> WarmLaunch | None:
        """What a container started from a warm image runs in place of ``entrypoint``
        (the image's, never empty) and ``command`` (:meth:`warm_container`'s): a script
        that starts the server, this session's password set before it accepts clients
        (by the script, or by :meth:`warm_files`). None (the default): the image's
        entrypoint runs, and :meth:`warm_unseal` sets it unless ``warm_files`` did."""
        return None

    def warm_seal(self, server: ServerContext, timeout: float) -> None:  # noqa: B027 - optional
        """In the warm image's builder, once ready and before it is stopped and
        committed: leave no password that logs in (the builder's was random anyway)."""

    def warm_unseal(  # noqa: B027 - optional
        self, server: ServerContext, credentials: Credentials, timeout: float
    ) -> None:
        """In a container started from a warm image, before the probe: give the user this
        session's password (unless :meth:`warm_files` did). Also when the server that
        :meth:`warm_launch`'s script started refuses the session's password."""

    # -- local ----------------------------------------------------------------------

    def find_binaries(self, bin_dir: Path | None) -> dict[str, Path]:
        """Locate the server binaries or raise BackendUnavailable saying where we looked."""
        raise BackendUnavailable(
            f"{self.title} has no local launch (its spec does not implement find_binaries); "
            f"use the docker or url backend (integration_{self.name}_backend)"
        )

    def prepare_local(
        self,
        *,
        binaries: dict[str, Path],
        workdir: Path,
        port: int,
        credentials: Credentials,
        runner: LocalRunner,
    ) -> LocalLaunch:
        """Initialise a data directory in ``workdir`` and say how to start the server."""
        raise BackendUnavailable(f"{self.title} has no local launch")

    # -- protocol -------------------------------------------------------------------

    def ready(self, endpoint: Endpoint, timeout: float, server: ServerContext) -> str:
        """One readiness check (raises until ready); by default :meth:`probe`."""
        return self.probe(endpoint, timeout)

    @abstractmethod
    def probe(self, endpoint: Endpoint, timeout: float) -> str:
        """One protocol round trip (``SELECT 1``, ``PING``); returns the server version."""

    def connection_count(self, endpoint: Endpoint, timeout: float) -> int | None:
        """How many clients are connected now, from the server's own statistics, not
        counting the connection asking; None when the service cannot tell (the default).

        The ``load`` fixture samples it during a block.

        .. versionadded:: 0.1
        """
        return None

    def missing_driver(self, module: str) -> MissingExtra:
        hint = f"pytest-integration-kit[{self.extra}]" if self.extra else module
        return MissingExtra(
            f"{self.title} needs the Python driver {module!r}, which is not installed: "
            f"pip install '{hint}'"
        )


def find_executable(
    names: Iterable[str], *, bin_dir: Path | None, extra_dirs: Iterable[Path] = ()
) -> tuple[Path | None, list[str]]:
    """Look for the first of ``names``; return it and the places looked in."""
    names = list(names)
    searched: list[str] = []
    if bin_dir is not None:
        for name in names:
            candidate = bin_dir / name
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return candidate, searched
        searched.append(str(bin_dir))
        return None, searched
    for name in names:
        found = shutil.which(name)
        if found:
            return Path(found), searched
    searched.append("PATH")
    for directory in [*extra_dirs, *homebrew_dirs(names)]:
        for name in names:
            candidate = directory / name
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return candidate, searched
        searched.append(str(directory))
    return None, searched


#: Where Homebrew lives: Apple silicon, Intel macs, Linux; ``HOMEBREW_PREFIX`` comes first.
HOMEBREW_PREFIXES = ("/opt/homebrew", "/usr/local", "/home/linuxbrew/.linuxbrew")


def homebrew_dirs(names: Iterable[str]) -> list[Path]:
    """Homebrew ``opt/<formula>/bin`` directories holding one of ``names`` (keg-only
    formulae such as ``postgresql@17`` are never on PATH), newest version first, then
    each prefix's ``bin``. Prefixes without an ``opt`` directory are not Homebrew's."""
    wanted = list(names)
    prefixes = [os.environ.get("HOMEBREW_PREFIX", ""), *HOMEBREW_PREFIXES]
    found: list[Path] = []
    for prefix in dict.fromkeys(p for p in prefixes if p):
        opt = Path(prefix) / "opt"
        if not opt.is_dir():
            continue
        kegs = {path.parent for name in wanted for path in opt.glob(f"*/bin/{name}")}
        found += sorted(kegs, key=lambda d: _formula_version(d.parent.name), reverse=True)
        found.append(Path(prefix) / "bin")
    return found


def _formula_version(formula: str) -> tuple[int, ...]:
    """``postgresql@9.6`` → (9, 6); unversioned formulae sort after every version."""
    _, _, version = formula.partition("@")
    try:
        return tuple(int(part) for part in version.split(".")) if version else (-1,)
    except ValueError:
        return (-1,)
