"""Settings of the servers the kit starts: options, extensions, init SQL.

Each built-in spec declares its own through :meth:`ServiceSpec.extra_settings`, made
here: ``integration_<service>_options`` (``name=value`` entries, rendered as the
server's own command-line form), and for PostgreSQL ``integration_postgres_extensions``
and ``integration_postgres_init``. They only reach servers the kit starts (docker,
local); on the url backend they are reported as having no effect.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Final, NamedTuple

from pytest_integration_kit.settings import Setting

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "ServerOption",
    "extensions_setting",
    "init_setting",
    "missing_extension_fix",
    "options_setting",
]

#: Extensions Debian ships in their own package: name → package, ``{major}`` filled in.
EXTENSION_PACKAGES: Final = {
    "postgis": "postgresql-{major}-postgis-3",
    "postgis_raster": "postgresql-{major}-postgis-3",
    "postgis_topology": "postgresql-{major}-postgis-3",
    "postgis_tiger_geocoder": "postgresql-{major}-postgis-3",
    "address_standardizer": "postgresql-{major}-postgis-3",
    "vector": "postgresql-{major}-pgvector",
    "pg_cron": "postgresql-{major}-cron",
    "pgrouting": "postgresql-{major}-pgrouting",
    "hypopg": "postgresql-{major}-hypopg",
    "pg_partman": "postgresql-{major}-partman",
    "timescaledb": "timescaledb-2-postgresql-{major}",
}
#: Docker images that carry an extension, for the error naming what to use instead.
EXTENSION_IMAGES: Final = {
    "postgis": "postgis/postgis:{major}-3.5",
    "vector": "pgvector/pgvector:pg{major}",
    "timescaledb": "timescale/timescaledb:latest-pg{major}",
}
#: Compiled (and cached by ``re``) at its first use: few runs name an extension.
_EXTENSION_NAME = r"^[A-Za-z_][A-Za-z0-9_-]{0,62}$"


class ServerOption(NamedTuple):
    """One ``name=value`` server setting (a NamedTuple, for the import's sake: a
    dataclass compiles its methods then; its repr is the same)."""

    name: str
    value: str

    def __str__(self) -> str:
        return f"{self.name}={self.value}"


class Entries(tuple):  # type: ignore[type-arg]
    """A setting's entries, shown ``;``-separated in the report header."""

    __slots__ = ()

    def __str__(self) -> str:
        return ";".join(map(str, self))


class _OptionsParser:
    """``name=value`` entries separated by newlines or ``;`` (a TOML list: one an entry)."""

    def __init__(self, pattern: str, reserved: tuple[str, ...]) -> None:
        self.pattern = pattern  # compiled at the first value parsed (most runs set none)
        self.reserved = reserved

    def __call__(self, raw: str) -> Entries:
        options: list[ServerOption] = []
        seen: set[str] = set()
        for entry in re.split(r"[\n;]", raw):
            if not entry.strip():
                continue
            name, sep, value = entry.strip().partition("=")
            name, value = name.strip(), value.strip()
            if not sep or not re.match(self.pattern, name):
                raise Reason(f"{entry.strip()!r} is not name=value")
            if not value.isprintable():
                raise Reason(f"the value of {name} has control characters")
            key = name.lower().replace("-", "_")
            if key in self.reserved:
                raise Reason(f"{name} is set by the kit itself (it needs it to reach the server)")
            if key in seen:
                raise Reason(f"{name} is set twice")
            seen.add(key)
            options.append(ServerOption(name, value))
        if not options:
            raise ValueError
        return Entries(options)


class Reason(TypeError):
    """A parser failure whose message is shown (the settings layer hides ValueError's)."""


def options_setting(
    service: str,
    title: str,
    *,
    form: str,
    name_pattern: str,
    reserved: Sequence[str],
    example: str,
    bad_example: str,
) -> Setting:
    """``integration_<service>_options``: server settings, given as ``form`` on start."""
    return Setting(
        f"{service}_options",
        f"Server settings for the {title} servers the kit starts (docker and local), "
        f"name=value entries one a line or separated by ';' (a list in TOML), given to the "
        f"server as {form}. No effect on the url backend: set them on that server.",
        _OptionsParser(name_pattern, tuple(reserved)),
        allowed=f"name=value entries separated by newlines or ';', names matching "
        f"{name_pattern} and not one the kit sets ({', '.join(reserved)})",
        metavar="NAME=VALUE",
        kind="list",
        example=example,
        bad_example=bad_example,
    )


def _extensions(raw: str) -> Entries:
    names = [part for part in re.split(r"[\s,]+", raw) if part]
    if not names:
        raise ValueError
    for name in names:
        if not re.match(_EXTENSION_NAME, name):
            raise Reason(f"{name!r} is not an extension name")
    return Entries(dict.fromkeys(names))


def extensions_setting() -> Setting:
    """``integration_postgres_extensions``: ``CREATE EXTENSION`` on every kit database."""
    return Setting(
        "postgres_extensions",
        "Extensions created (CREATE EXTENSION) on the PostgreSQL servers the kit starts, "
        "in template1 and so in every database the kit makes; the image or the local "
        "packages must carry them (e.g. postgis: Debian's postgresql-15-postgis-3, the "
        "postgis/postgis image). No effect on the url backend.",
        _extensions,
        allowed="extension names separated by commas, spaces or newlines",
        metavar="NAMES",
        kind="list",
        example="postgis,pg_trgm",
        bad_example="postgis;drop",
    )


def _init_files(raw: str) -> Entries:
    entries = [part.strip() for part in raw.replace(",", "\n").splitlines() if part.strip()]
    if not entries:
        raise ValueError
    files: list[Path] = []
    for entry in entries:
        if "\0" in entry or not entry.lower().endswith(".sql"):
            raise ValueError
        path = Path(entry).expanduser()
        if not path.is_file():
            raise Reason(f"{entry} is not a file (relative paths start where pytest runs)")
        files.append(path.resolve())
    return Entries(files)


def init_setting() -> Setting:
    """``integration_postgres_init``: SQL files run once per started server."""
    return Setting(
        "postgres_init",
        "SQL files run once on each PostgreSQL server the kit starts, as its superuser, "
        "in template1 (so what they create is in every database the kit makes; roles "
        "and ALTER SYSTEM are server-wide), before any test database exists. Comma- or "
        "line-separated. No effect on the url backend.",
        _init_files,
        allowed="paths of existing *.sql files, separated by commas or newlines",
        metavar="FILES",
        kind="list",
        example="init/roles.sql",
        bad_example="tests/init.txt",
    )


def missing_extension_fix(extension: str, major: str, *, docker: bool) -> str:
    """What to do when the server lacks ``extension``: the package or image to use."""
    if docker:
        template = EXTENSION_IMAGES.get(extension)
        image = (
            template.format(major=major)
            if template
            else f"one built FROM postgres:{major} that installs {extension}"
        )
        return f"use an image that carries it (integration_postgres_image), e.g. {image}"
    package = EXTENSION_PACKAGES.get(extension)
    if package is None:
        return (
            f"install the package that carries it for PostgreSQL {major} (Debian/Ubuntu: "
            f"apt-cache search postgresql-{major}; contrib extensions come with the server)"
        )
    name = package.format(major=major)
    return f"install the package {name} (Debian/Ubuntu: apt-get install {name})"
