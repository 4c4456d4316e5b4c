"""The table of settings, and their resolution from CLI, environment and ini file.

Every setting has one name, spelled three ways: ini key ``integration_x``, environment
variable ``INTEGRATION_X`` and command-line option ``--integration-x``. Precedence is
CLI > env > ini > default. Unset is told apart from falsy with a sentinel, and each
resolved value remembers where it came from so the report header can say so.

Raw values come as strings (CLI, env, ini files) or as native TOML values (pytest 9's
``[tool.pytest]``: booleans, numbers, lists); both are read the same way. Any exception a
parser raises becomes part of one :class:`ConfigError`: a bad value never escapes as a
traceback.

This module knows nothing of pytest: ``plugin.py`` feeds it the raw values.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, NamedTuple
from urllib.parse import urlsplit

from pytest_integration_kit.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Mapping

    from pytest_integration_kit.services.spec import ServiceSpec

__all__ = [
    "ResolvedSetting",
    "Setting",
    "Settings",
    "conflicts",
    "mask_url_password",
    "resolve_settings",
    "service_settings",
    "settings_table",
]

BACKENDS: Final = ("auto", "docker", "local", "url")


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Final = _Unset()

TRUE_WORDS: Final = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS: Final = frozenset({"0", "false", "no", "off"})
BOOL_ALLOWED: Final = "a boolean (1/0, true/false, yes/no, on/off)"

#: The most clones the clone strategy keeps ready: each holds a database and a pooled
#: connection on the server, so more only eats into the server's connection limit.
MAX_CLONE_POOL_SIZE: Final = 32

#: How much of a bad value an error message shows (a 10 kB value stays readable).
SHOWN_CHARS: Final = 120

#: What a setting's value is: it decides the command-line form (``bool`` settings are
#: flags with a ``--no-`` twin) and the ini type pytest is told (``list``: one entry a
#: line, or a TOML list).
KINDS: Final = ("text", "bool", "int", "float", "list")


class Setting(NamedTuple):
    """One setting: its name, how to parse it, its default and its help text.

    A NamedTuple, not a frozen dataclass: every run imports this module, and making a
    dataclass compiles its methods at import (issue #11).
    """

    name: str
    help: str
    parse: Callable[[str], Any]
    #: What is allowed, in words, for error messages and the reference docs.
    allowed: str
    #: The default value, or a callable computing it from already-resolved settings
    #: and the environment (it returns the value and a short source description).
    default: Any = None
    default_from: Callable[[Mapping[str, Any], Mapping[str, str]], tuple[Any, str]] | None = None
    metavar: str = "VALUE"
    secret: bool = False
    kind: str = "text"
    #: A valid and an invalid raw value: the docs show them, the tests try both.
    example: str = ""
    bad_example: str = ""

    @property
    def ini(self) -> str:
        return f"integration_{self.name}"

    @property
    def env(self) -> str:
        return f"INTEGRATION_{self.name.upper()}"

    @property
    def cli(self) -> str:
        return "--integration-" + self.name.replace("_", "-")

    @property
    def no_cli(self) -> str:
        """The ``--no-…`` twin of a boolean flag."""
        return "--no-integration-" + self.name.replace("_", "-")

    @property
    def dest(self) -> str:
        return f"integration_{self.name}"

    def text(self, raw: object) -> str:
        """A raw value (a string, or a native TOML bool, number or list) as text to parse."""
        if isinstance(raw, str):
            return raw
        if isinstance(raw, bool):
            return "true" if raw else "false"
        if isinstance(raw, (int, float)):
            return str(raw)
        if isinstance(raw, (list, tuple)) and self.kind == "list":
            if not all(isinstance(item, str) for item in raw):
                raise TypeError("every entry of the list must be a string")
            return "\n".join(raw)
        raise TypeError(f"got a {type(raw).__name__}")


def _choice(*choices: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip().lower()
        if value not in choices:
            raise ValueError
        return value

    return parse


def _bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in TRUE_WORDS:
        return True
    if value in FALSE_WORDS:
        return False
    raise ValueError


def _positive_seconds(raw: str) -> float:
    value = float(raw)
    if not 0 < value < math.inf:  # also rejects NaN
        raise ValueError
    return value


def _lease_seconds(raw: str) -> float:
    value = float(raw)
    if not 1 <= value <= 86400:  # also rejects NaN
        raise ValueError
    return value


def _path(raw: str) -> Path:
    """``raw`` as a path, ``~`` expanded; no NUL byte, no line break, not blank."""
    value = raw.strip()
    if not value or "\0" in value or "\n" in value or "\r" in value:
        raise ValueError
    return Path(value).expanduser()  # RuntimeError for ~nosuchuser: reported like the rest


def _directory(raw: str) -> Path:
    path = _path(raw)
    if not path.is_dir():
        raise ValueError
    return path


def _cache_directory(raw: str) -> Path:
    """An absolute path (``~`` allowed) that is a directory or does not exist yet."""
    path = _path(raw)
    if not path.is_absolute() or (path.exists() and not path.is_dir()):
        raise ValueError
    return path


def default_cache_dir(env: Mapping[str, str]) -> Path:
    """The per-user cache directory for kept servers and warm data directories.

    As root, servers run as an unprivileged user that cannot enter ``/root``, so the
    cache is ``/var/cache/pytest-integration-kit`` rather than ``~/.cache/…``.
    """
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return Path("/var/cache/pytest-integration-kit")
    base = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "pytest-integration-kit"


def _cache_dir_default(_: Mapping[str, Any], env: Mapping[str, str]) -> tuple[Path, str]:
    return default_cache_dir(env), "default"


# Patterns are compiled (and cached by ``re``) at their first use, not at import: every
# run imports this module, few set an image or print a URL with a password.

#: Docker's reference grammar, loosely: [registry[:port]/]name[/name…][:tag][@digest].
_IMAGE = (
    r"(?:[A-Za-z0-9.-]+(?::[0-9]+)?/)?"
    r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?"
    r"(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?"
)


def _image(raw: str) -> str:
    value = raw.strip()
    if len(value) > 512 or not re.fullmatch(_IMAGE, value):
        raise ValueError
    return value


def _url_for(schemes: tuple[str, ...]) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip()
        if any(not ch.isprintable() for ch in value):
            raise ValueError
        parts = urlsplit(value)
        scheme = parts.scheme.split("+", 1)[0]
        if scheme not in schemes or not parts.hostname:
            raise ValueError
        parts.port  # noqa: B018 - raises ValueError for a port out of range
        return value

    return parse


def _module_attr(raw: str) -> str:
    value = raw.strip()
    module, sep, attr = value.partition(":")
    if not sep or not module or not attr:
        raise ValueError
    if not all(part.isidentifier() for part in module.split(".") + attr.split(".")):
        raise ValueError
    return value


def _config_file(raw: str) -> str:
    value = raw.strip()
    if not value.endswith((".ini", ".toml")) or not value.isprintable():
        raise ValueError
    return value


def _seed_entries(raw: str) -> tuple[str, ...]:
    entries = tuple(part for part in raw.replace(",", " ").split() if part)
    if not entries:
        raise ValueError
    for entry in entries:
        if "\0" in entry or not entry.isprintable():
            raise ValueError
        if not entry.lower().endswith(".sql"):
            _module_attr(entry)
    return entries


def _clone_pool_size(raw: str) -> int:
    value = int(raw)
    if not 1 <= value <= MAX_CLONE_POOL_SIZE:
        raise ValueError
    return value


#: Query parameters that carry a password (libpq's ``password``/``sslpassword``,
#: redis-py's ``password``, and the usual spellings of a secret).
_SECRET_QUERY = r"(?i)([?&;](?:[a-z_]*pass(?:word|wd)?|pwd|secret|token|auth)=)[^&;#]*"  # noqa: S105 - a pattern, not a password


def mask_url_password(url: str) -> str:
    """The URL with every password replaced by ``***``: fit to print.

    ``scheme://user:secret@host`` → ``scheme://user:***@host``, also when the secret
    holds an unencoded ``/``, ``@``, ``#`` or ``?`` (everything up to the last ``@`` is
    the user info), and ``?password=secret`` → ``?password=***``. Masks too much rather
    than too little: this is for display only.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    userinfo, at, hostpart = rest.rpartition("@")
    if at:
        user, colon, _ = userinfo.partition(":")
        if colon:
            rest = f"{user}:***@{hostpart}"
    rest = re.sub(_SECRET_QUERY, r"\1***", rest)
    return f"{scheme}{sep}{rest}"


def _missing_default(_: Mapping[str, Any], env: Mapping[str, str]) -> tuple[str, str]:
    """`fail` when the `CI` environment variable is set (and not false/0/no/off), else `skip`"""
    ci = env.get("CI", "")
    if ci and ci.strip().lower() not in FALSE_WORDS:
        return "fail", "default: CI is set"
    return "skip", "default"


def _inherit_backend(resolved: Mapping[str, Any], _: Mapping[str, str]) -> tuple[str, str]:
    """the value of `integration_backend`"""
    return resolved["backend"], "from integration_backend"


def settings_table(specs: Iterable[ServiceSpec] | None = None) -> tuple[Setting, ...]:
    """Every setting: the general ones, then each registered service's (``specs``, by
    default every service registered now), then the isolation ones."""
    if specs is None:
        from pytest_integration_kit.services.registry import REGISTRY  # noqa: PLC0415

        specs = REGISTRY.specs()
    backend_allowed = ", ".join(BACKENDS)
    table: list[Setting] = [
        Setting(
            "backend",
            "How servers come to exist: docker, local binaries, a URL, or auto "
            "(docker, else local, else the missing-backend policy).",
            _choice(*BACKENDS),
            allowed=f"one of {backend_allowed}",
            default="auto",
            metavar="{" + ",".join(BACKENDS) + "}",
            example="local",
            bad_example="dockr",
        ),
        Setting(
            "missing",
            "What a test that needs an unavailable backend does: skip, or fail "
            "(the default when the CI environment variable is set).",
            _choice("skip", "fail"),
            allowed="one of skip, fail",
            default_from=_missing_default,
            metavar="{skip,fail}",
            example="fail",
            bad_example="maybe",
        ),
        Setting(
            "startup_timeout",
            "Seconds a server may take to answer its readiness probe.",
            _positive_seconds,
            allowed="a number of seconds greater than 0",
            default=60.0,
            metavar="SECONDS",
            kind="float",
            example="12.5",
            bad_example="-1",
        ),
        Setting(
            "reuse",
            "Keep servers after the run and attach to them on the next one.",
            _bool,
            allowed=BOOL_ALLOWED,
            default=False,
            metavar="BOOL",
            kind="bool",
            example="true",
            bad_example="perhaps",
        ),
        Setting(
            "warm_start",
            "Start PostgreSQL and MySQL from a data directory initialised by an earlier "
            "start: a copy kept in the cache dir (local), an image committed after the "
            "first initialisation (docker). Off: every server initialises its own.",
            _bool,
            allowed=BOOL_ALLOWED,
            default=True,
            metavar="BOOL",
            kind="bool",
            example="false",
            bad_example="lukewarm",
        ),
        Setting(
            "ryuk",
            "Also let testcontainers' Ryuk remove a run's containers the moment the run "
            "dies, where its image is present (without xdist workers and reuse only); label "
            "reaping at the next start works without it.",
            _bool,
            allowed=BOOL_ALLOWED,
            default=False,
            metavar="BOOL",
            kind="bool",
            example="yes",
            bad_example="sometimes",
        ),
        Setting(
            "cache_dir",
            "Where kept servers (integration_reuse) and warm local data directories live.",
            _cache_directory,
            allowed="an absolute path to a directory (created if missing)",
            default_from=_cache_dir_default,
            metavar="DIR",
            example="~/.cache/pytest-integration-kit",
            bad_example="relative/cache",
        ),
        Setting(
            "block_network",
            "Fail a test not marked requires_network that connects beyond the loopback "
            "interface (and the session's servers).",
            _bool,
            allowed=BOOL_ALLOWED,
            default=False,
            metavar="BOOL",
            kind="bool",
            example="true",
            bad_example="strict",
        ),
    ]
    for spec in specs:
        table += service_settings(spec)
    table.append(
        Setting(
            "schema",
            "The schema to create in each test database: module:attr naming a SQLAlchemy "
            "MetaData or a callable given a Connection.",
            _module_attr,
            allowed="module:attr, e.g. myapp.models:Base.metadata",
            metavar="MODULE:ATTR",
            example="myapp.models:Base.metadata",
            bad_example="myapp.models",
        )
    )
    table += [
        Setting(
            "alembic_config",
            "An alembic.ini whose 'upgrade head' builds the test database schema "
            "(instead of, or before, integration_schema).",
            _config_file,
            allowed="a path to an alembic .ini (or .toml) file",
            metavar="PATH",
            example="alembic.ini",
            bad_example="migrations",
        ),
        Setting(
            "seed",
            "Seed data loaded into the template after the schema: SQL files and/or "
            "module:attr callables given a Connection, separated by commas or one a line "
            "(a list in TOML).",
            _seed_entries,
            allowed="*.sql paths or module:attr callables, separated by commas or one a line",
            metavar="FILES",
            kind="list",
            example="seed/users.sql,myapp.seed:load",
            bad_example="seed/users.txt",
        ),
        Setting(
            "isolation",
            "How tests are kept apart in the database: rollback (savepoint sessions), "
            "truncate (empty the written tables after the test) or clone (a fresh "
            "database per test).",
            _choice("rollback", "truncate", "clone"),
            allowed="one of rollback, truncate, clone",
            default="rollback",
            metavar="{rollback,truncate,clone}",
            example="truncate",
            bad_example="savepoint",
        ),
        Setting(
            "leak_check",
            "Fail a test that leaves a database connection checked out or a transaction open.",
            _bool,
            allowed=BOOL_ALLOWED,
            default=False,
            metavar="BOOL",
            kind="bool",
            example="true",
            bad_example="sometimes",
        ),
        Setting(
            "clone_pool_size",
            "How many fresh databases the clone strategy keeps ready in the background; "
            f"at most {MAX_CLONE_POOL_SIZE}, as each ready clone holds a database and a "
            "connection on the server (more only eats into its connection limit).",
            _clone_pool_size,
            allowed=f"a whole number from 1 to {MAX_CLONE_POOL_SIZE}",
            default=2,
            metavar="N",
            kind="int",
            example="4",
            bad_example="0",
        ),
        Setting(
            "lease_seconds",
            "How long what a run made on a server (databases, Redis db indexes, RabbitMQ "
            "vhosts) stays its own without a renewal; a live run renews every third of it. "
            "A run on another host drops what a killed run left once the lease has run "
            "out; on the same host a dead process id is enough.",
            _lease_seconds,
            allowed="a number of seconds from 1 to 86400",
            default=600.0,  # isolation.ownership.DEFAULT_LEASE_SECONDS
            metavar="SECONDS",
            kind="float",
            example="120",
            bad_example="0.5",
        ),
    ]

    def host_list(raw: str) -> tuple[str, ...]:
        """Names, addresses or networks, as pytest-socket's --allow-hosts takes them."""
        import ipaddress  # noqa: PLC0415 - only this parser needs it

        hosts = tuple(part for part in raw.replace(",", " ").split() if part)
        for host in hosts:
            if "/" in host:
                ipaddress.ip_network(host, strict=False)
            elif ":" in host or host.replace(".", "").isdigit():
                ipaddress.ip_address(host.strip("[]"))
            elif not host.replace("-", "").replace("_", "").replace(".", "").isalnum():
                raise ValueError  # a name is letters, digits, - _ and dots
        return hosts

    table.append(
        Setting(
            "allow_hosts",
            "Hosts a test may reach while integration_block_network is on, besides loopback "
            "and the session's servers: names, addresses or networks (CIDR), comma-separated "
            "(a list in TOML).",
            host_list,
            allowed="comma-separated host names, IP addresses or networks (10.0.0.0/8)",
            metavar="HOSTS",
            kind="list",
            example="api.internal,10.0.0.0/8",
            bad_example="10.0.0.0/33",
        )
    )
    # -- apps: the user's application wired in (integration_env and friends) ------------
    from pytest_integration_kit.apps.config import (  # noqa: PLC0415 - the apps settings' parsers, kept with them
        module_attrs,
        parse_env,
        secret_text,
    )

    table += [
        Setting(
            "env",
            "Environment variables set before conftest.py and test modules are imported, "
            "naming this worker's isolated databases: NAME=template entries separated by "
            "newlines or spaces (a list in TOML).",
            parse_env,
            allowed="NAME={service.field} or NAME={service.url:driver} entries; fields url, "
            "host, port, user, password, database",
            metavar="NAME=TEMPLATE",
            kind="list",
            example="DATABASE_URL={postgres.url:asyncpg}",
            bad_example="DATABASE_URL={postgres.uri}",
        ),
        Setting(
            "sessionmaker",
            "The application's own sessionmaker(s), bound into each test's transaction so "
            "what the code under test commits is rolled back: module:attr, comma-separated.",
            module_attrs,
            allowed="comma-separated module:attr, e.g. myapp.db:SessionLocal",
            metavar="MODULE:ATTR",
            kind="list",
            example="myapp.db:SessionLocal",
            bad_example="myapp.db.SessionLocal",
        ),
        Setting(
            "session_class",
            "The Session class of the session fixtures (e.g. sqlmodel:Session; the async "
            "ones use it as their sync_session_class), or an AsyncSession subclass for the "
            "async ones.",
            _module_attr,
            allowed="module:attr, e.g. sqlmodel:Session",
            metavar="MODULE:ATTR",
            example="sqlmodel:Session",
            bad_example="sqlmodel",
        ),
        Setting(
            "redis_client_class",
            "The client class of redis_client (a redis.Redis subclass) or of "
            "redis_async_client (a redis.asyncio.Redis subclass).",
            _module_attr,
            allowed="module:attr, e.g. myapp.queue:QueueRedis",
            metavar="MODULE:ATTR",
            example="myapp.queue:QueueRedis",
            bad_example="QueueRedis",
        ),
        Setting(
            "redis_password",
            "The password of Redis servers the kit starts; empty for none (the server still "
            "listens on 127.0.0.1 only). Unset: a random one per session.",
            secret_text,
            allowed="a password without whitespace, or empty for no password",
            metavar="PASSWORD",
            secret=True,
            example="s3cret",
            bad_example="two words",
        ),
        Setting(
            "redis_per_worker",
            "Start a private Redis server for each xdist worker instead of one shared by "
            "all: FLUSHALL, CONFIG SET and other server-wide commands in one worker's tests "
            "then touch no other worker (docker and local backends).",
            _bool,
            allowed=BOOL_ALLOWED,
            default=False,
            metavar="BOOL",
            kind="bool",
            example="true",
            bad_example="per-test",
        ),
    ]

    # -- apps: clients into the user's application (app_client, live_server, …) ---------
    def openapi_source(raw: str) -> bool | str:
        """A boolean, or the path of a JSON or YAML OpenAPI document."""
        word = raw.strip().lower()
        if word in TRUE_WORDS or word in FALSE_WORDS:
            return word in TRUE_WORDS
        path = str(_path(raw))
        if not path.endswith((".json", ".yaml", ".yml")):
            raise ValueError
        return path

    table += [
        Setting(
            "app",
            "Your ASGI or WSGI application, for app_client, app_async_client and live_server.",
            _module_attr,
            allowed="module:attr, e.g. app.main:app",
            metavar="MODULE:ATTR",
            example="app.main:app",
            bad_example="app.main",
        ),
        Setting(
            "app_session",
            "A FastAPI session dependency (e.g. get_session) that app clients answer with "
            "the test's own postgres_session / mysql_session.",
            _module_attr,
            allowed="module:attr, e.g. app.db:get_session",
            metavar="MODULE:ATTR",
            example="app.db:get_session",
            bad_example="get_session",
        ),
        Setting(
            "login",
            "A callable given an app client and a user, returning headers or cookies: what "
            "app_client.as_user(user) carries (made once per user and run).",
            _module_attr,
            allowed="module:attr, e.g. tests.auth:login",
            metavar="MODULE:ATTR",
            example="tests.auth:login",
            bad_example="tests/auth.py",
        ),
        Setting(
            "openapi",
            "Check every app client response against the OpenAPI document: true (the "
            "application's own, FastAPI or Litestar) or the path of a JSON/YAML document.",
            openapi_source,
            allowed=f"{BOOL_ALLOWED}, or a path ending in .json, .yaml or .yml",
            default=False,
            metavar="BOOL|PATH",
            example="openapi.json",
            bad_example="openapi.txt",
        ),
    ]
    return tuple(table)


def service_settings(spec: ServiceSpec) -> list[Setting]:
    """The settings every service gets, made from its spec, then the spec's own."""
    service = spec.name
    backend_allowed = ", ".join(BACKENDS)
    schemes = spec.accepted_url_schemes
    return [
        Setting(
            f"{service}_backend",
            f"Backend for {spec.title}; inherits integration_backend.",
            _choice(*BACKENDS),
            allowed=f"one of {backend_allowed}",
            default_from=_inherit_backend,
            metavar="{" + ",".join(BACKENDS) + "}",
            example="docker",
            bad_example="k8s",
        ),
        Setting(
            f"{service}_image",
            f"Docker image for {spec.title}.",
            _image,
            allowed="a Docker image reference ([registry/]name[:tag][@digest]), e.g. "
            + spec.default_image,
            default=spec.default_image,
            metavar="IMAGE",
            example=f"registry.example.com/{service}:1",
            bad_example="two words",
        ),
        Setting(
            f"{service}_url",
            f"URL of an existing {spec.title} server, for the url backend.",
            _url_for(schemes),
            allowed="a URL with a host and scheme "
            + " or ".join(f"{s}[+driver]://" for s in schemes),
            metavar="URL",
            secret=True,
            example=spec.example_url(),
            bad_example="http://example.com/x" if "http" not in schemes else "ftp://example.com/x",
        ),
        Setting(
            f"{service}_bin_dir",
            f"Directory holding the {spec.title} server binaries, for the local backend.",
            _directory,
            allowed="an existing directory",
            metavar="DIR",
            example="/usr/bin",
            bad_example="/nonexistent/bin",
        ),
        *spec.extra_settings(),
    ]


class ResolvedSetting(NamedTuple):
    """A setting's value and where it came from (a NamedTuple, as Setting)."""

    setting: Setting
    value: Any
    #: ``"cli"``, ``"env"``, ``"ini"`` or a description of the default.
    source: str

    def describe(self) -> str:
        shown = (
            mask_url_password(str(self.value))
            if self.setting.secret and self.value is not None
            else self.value
        )
        if shown is None:
            shown = "(unset)"
        return f"{shown} ({self.source})"


class Settings:
    """Every setting, resolved. Look values up with ``settings["backend"]``.

    A plain class, not a dataclass, for the import's sake (see Setting).
    """

    __slots__ = ("resolved",)

    def __init__(self, resolved: Mapping[str, ResolvedSetting] | None = None) -> None:
        self.resolved: Mapping[str, ResolvedSetting] = {} if resolved is None else resolved

    def __repr__(self) -> str:
        return f"Settings(resolved={self.resolved!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Settings):
            return NotImplemented
        return self.resolved == other.resolved

    __hash__ = None  # type: ignore[assignment]  # a mapping inside: as the dataclass was

    def __getitem__(self, name: str) -> Any:
        return self.resolved[name].value

    def source(self, name: str) -> str:
        return self.resolved[name].source

    def __iter__(self) -> Iterator[ResolvedSetting]:
        return iter(self.resolved.values())


def _shown(raw: object, setting: Setting) -> str:
    """``raw`` for an error message: masked when secret, cut short when long."""
    text = raw if isinstance(raw, str) else None
    if text is None:
        return repr(raw)
    if setting.secret:
        text = mask_url_password(text)
    if len(text) > SHOWN_CHARS:
        return f"{text[:SHOWN_CHARS]!r}... ({len(text)} characters)"
    return repr(text)


def _reason(exc: Exception, setting: Setting) -> str:
    """What a parser's exception adds to "expected …", if anything safe to print."""
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if setting.secret or not detail:
        return ""  # a URL parser's message may quote the password
    if isinstance(exc, ValueError) and not isinstance(exc, UnicodeError):
        return ""  # "could not convert …": nothing the message does not say already
    if len(detail) > SHOWN_CHARS:
        detail = detail[:SHOWN_CHARS] + "..."
    return f" ({type(exc).__name__}: {detail})"


def resolve_settings(
    *,
    cli: Mapping[str, object],
    ini: Mapping[str, object],
    env: Mapping[str, str] | None = None,
    table: Iterable[Setting] | None = None,
) -> Settings:
    """Resolve every setting with precedence CLI > env > ini > default.

    ``cli`` and ``ini`` map setting names to raw values (None or absent = unset): strings,
    or the native values of a TOML file or a flag (bool, int, float, a list of strings).
    An empty environment variable counts as unset, as with click. Every error — whatever
    a parser raised — is collected and raised together as one :class:`ConfigError`.
    """
    environ = os.environ if env is None else env
    resolved: dict[str, ResolvedSetting] = {}
    errors: list[str] = []
    for setting in settings_table() if table is None else table:
        raw: object = UNSET
        source = ""
        where = ""
        if cli.get(setting.name) is not None:
            raw, source, where = cli[setting.name], "cli", setting.cli
        elif environ.get(setting.env):
            raw, source, where = environ[setting.env], "env", setting.env
        elif ini.get(setting.name) is not None:
            raw, source, where = ini[setting.name], "ini", setting.ini
        if raw is UNSET:
            try:
                if setting.default_from is not None:
                    value, source = setting.default_from(
                        {k: v.value for k, v in resolved.items()}, environ
                    )
                else:
                    value, source = setting.default, "default"
            except KeyError:
                continue  # it depends on a setting that is already in error
            except Exception as exc:  # any failure is the user's to fix
                errors.append(
                    f"{setting.ini}: its default cannot be computed here "
                    f"({type(exc).__name__}: {exc}); set it to {setting.allowed}"
                )
                continue
            resolved[setting.name] = ResolvedSetting(setting, value, source)
            continue
        try:
            value = setting.parse(setting.text(raw))
        except Exception as exc:  # every parser failure is a usage error
            errors.append(
                f"{setting.ini}: {_shown(raw, setting)} is not allowed (set by {where}); "
                f"expected {setting.allowed}{_reason(exc, setting)}"
            )
            continue
        resolved[setting.name] = ResolvedSetting(setting, value, source)
    if errors:
        raise ConfigError("\n".join(errors))
    return Settings(resolved)


def conflicts(settings: Settings) -> list[str]:
    """Settings that are set but have no effect given the others, one sentence each.

    Today: a service's URL when its backend is not ``url`` (``auto`` never picks the
    url backend), which would otherwise be ignored without a word; on the url backend,
    the settings only a server the kit starts can honour (server options), and a Redis
    server per worker (which it cannot start).
    """
    from pytest_integration_kit.services.registry import REGISTRY  # noqa: PLC0415

    found: list[str] = []
    for service in REGISTRY.names():
        url = settings.resolved.get(f"{service}_url")
        backend = settings.resolved.get(f"{service}_backend")
        spec = REGISTRY.get(service)
        if spec is not None and backend is not None and backend.value == "url":
            for key in spec.server_only_settings:
                given = settings.resolved.get(f"{service}_{key}")
                if given is not None and given.value is not None:
                    found.append(
                        f"integration_{service}_{key} is set ({given.source}) but "
                        f"integration_{service}_backend is url: the kit does not start that "
                        "server, so it cannot apply it; configure that server itself, or "
                        "set this only where the kit starts the server (docker, local)"
                    )
        if url is None or url.value is None or backend is None or backend.value == "url":
            continue
        found.append(
            f"integration_{service}_url is set ({url.source}) but "
            f"integration_{service}_backend is {backend.value} ({backend.source}), so the "
            f"URL is not used; set integration_{service}_backend (or integration_backend) "
            "to url to use it, or unset the URL"
        )
    per_worker = settings.resolved.get("redis_per_worker")
    backend = settings.resolved.get("redis_backend")
    on_url = backend is not None and backend.value == "url"
    if per_worker is not None and per_worker.value and backend is not None and on_url:
        found.append(
            f"integration_redis_per_worker is true ({per_worker.source}) but "
            f"integration_redis_backend is url ({backend.source}): a server given by URL "
            "is one server, shared by every worker; use the docker or local backend for "
            "a server per worker"
        )
    return found
