"""The table of settings: every setting declared once, in the order the docs list them.

Every setting has one name, spelled three ways: ini key ``integration_x``, environment
variable ``INTEGRATION_X`` and command-line option ``--integration-x``; the CLI options,
ini keys, report header, reference page and tests are all made from this table. First
the general settings, then each registered service's (:func:`service_settings`, made
from its spec), then the database and network ones, then the application's
(declared in :mod:`pytest_integration_kit.apps.config`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from pytest_integration_kit.settings.setting import (
    BOOL_ALLOWED,
    FALSE_WORDS,
    MAX_CLONE_POOL_SIZE,
    Setting,
    boolean,
    cache_directory,
    choice,
    clone_pool_size,
    config_file,
    directory,
    host_list,
    image,
    lease_seconds,
    module_attr,
    positive_seconds,
    seed_entries,
    url_for,
)

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from pytest_integration_kit.services.spec import ServiceSpec

__all__ = ["BACKENDS", "default_cache_dir", "service_settings", "settings_table"]

BACKENDS: Final = ("auto", "docker", "local", "url")


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


def _missing_default(_: Mapping[str, Any], env: Mapping[str, str]) -> tuple[str, str]:
    """`fail` when the `CI` environment variable is set (and not false/0/no/off), else `skip`"""
    ci = env.get("CI", "")
    if ci and ci.strip().lower() not in FALSE_WORDS:
        return "fail", "default: CI is set"
    return "skip", "default"


def _inherit_backend(resolved: Mapping[str, Any], _: Mapping[str, str]) -> tuple[str, str]:
    """the value of `integration_backend`"""
    return resolved["backend"], "from integration_backend"


#: The last table made, with the specs it was made from: a run's start-up asks for it
#: three times (pytest's options, then the settings, read twice), each about a
#: millisecond here (issue #11). Specs are not changed once registered.
_last: tuple[tuple[ServiceSpec, ...], tuple[Setting, ...]] | None = None


def settings_table(specs: Iterable[ServiceSpec] | None = None) -> tuple[Setting, ...]:
    """Every setting: the general ones, then each registered service's (``specs``, by
    default every service registered now), then the isolation and network ones, then the
    application's."""
    global _last  # noqa: PLW0603 - a cache of one entry
    if specs is None:
        from pytest_integration_kit.services.registry import REGISTRY  # noqa: PLC0415

        specs = REGISTRY.specs()
    specs = tuple(specs)
    last = _last
    if (
        last is not None
        and len(last[0]) == len(specs)
        and all(made is spec for made, spec in zip(last[0], specs, strict=True))
    ):
        return last[1]
    table = _make_table(specs)
    _last = (specs, table)
    return table


def _make_table(specs: tuple[ServiceSpec, ...]) -> tuple[Setting, ...]:
    backend_allowed = ", ".join(BACKENDS)
    table: list[Setting] = [
        Setting(
            "backend",
            "How servers come to exist: docker, local binaries, a URL, or auto "
            "(docker, else local, else the missing-backend policy).",
            choice(*BACKENDS),
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
            choice("skip", "fail"),
            allowed="one of skip, fail",
            default_from=_missing_default,
            metavar="{skip,fail}",
            example="fail",
            bad_example="maybe",
        ),
        Setting(
            "startup_timeout",
            "Seconds a server may take to answer its readiness probe.",
            positive_seconds,
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
            boolean,
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
            boolean,
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
            boolean,
            allowed=BOOL_ALLOWED,
            default=False,
            metavar="BOOL",
            kind="bool",
            example="yes",
            bad_example="sometimes",
        ),
        Setting(
            "docker_direct",
            "Connect to a container at its own address on the engine's bridge network where "
            "this machine reaches it, not through docker-proxy at the port published on "
            "127.0.0.1 (about 80 µs less per round trip); off: always the published port.",
            boolean,
            allowed=BOOL_ALLOWED,
            default=True,
            metavar="BOOL",
            kind="bool",
            example="false",
            bad_example="sideways",
        ),
        Setting(
            "docker_host_network",
            "Run the container of a service that can be told its port (PostgreSQL, "
            "MySQL/MariaDB and Redis can) in this machine's network, its server listening "
            "on 127.0.0.1 at a free port and nowhere else, where the engine runs containers "
            "on this machine (its bridge network's gateway is one of this machine's "
            "addresses): no bridge, NAT rules or docker-proxy to set up, so it starts in "
            "about half the time and CPU; off: the bridge network and a port published on "
            "127.0.0.1.",
            boolean,
            allowed=BOOL_ALLOWED,
            default=True,
            metavar="BOOL",
            kind="bool",
            example="false",
            bad_example="outside",
        ),
        Setting(
            "cache_dir",
            "Where kept servers (integration_reuse) and warm local data directories live.",
            cache_directory,
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
            boolean,
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
            module_attr,
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
            config_file,
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
            seed_entries,
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
            choice("rollback", "truncate", "clone"),
            allowed="one of rollback, truncate, clone",
            default="rollback",
            metavar="{rollback,truncate,clone}",
            example="truncate",
            bad_example="savepoint",
        ),
        Setting(
            "leak_check",
            "Fail a test that leaves a database connection checked out or a transaction open.",
            boolean,
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
            clone_pool_size,
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
            lease_seconds,
            allowed="a number of seconds from 1 to 86400",
            default=600.0,  # isolation.ownership.DEFAULT_LEASE_SECONDS
            metavar="SECONDS",
            kind="float",
            example="120",
            bad_example="0.5",
        ),
    ]

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
    # The application's settings are declared with their parsers, in the apps layer.
    from pytest_integration_kit.apps.config import app_settings  # noqa: PLC0415

    table += app_settings()
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
            choice(*BACKENDS),
            allowed=f"one of {backend_allowed}",
            default_from=_inherit_backend,
            metavar="{" + ",".join(BACKENDS) + "}",
            example="docker",
            bad_example="k8s",
        ),
        Setting(
            f"{service}_image",
            f"Docker image for {spec.title}.",
            image,
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
            url_for(schemes),
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
            directory,
            allowed="an existing directory",
            metavar="DIR",
            example="/usr/bin",
            bad_example="/nonexistent/bin",
        ),
        *spec.extra_settings(),
    ]
