"""``integration_env`` lines: ``NAME=template`` with ``{service.field[:driver]}`` holes.

``DATABASE_URL={postgres.url:asyncpg}`` renders, given the endpoint the placeholder
names, to ``postgresql+asyncpg://…``. Literal text around the holes is kept, ``{{`` and
``}}`` stand for braces. Parsing checks the grammar only (which services exist and which
drivers SQLAlchemy knows is checked by :func:`check_templates` once plugins are loaded);
rendering is plain string work on :class:`~pytest_integration_kit.services.endpoint.Endpoint`.

.. versionadded:: 0.1
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

    from pytest_integration_kit.services.endpoint import Endpoint

__all__ = [
    "FIELDS",
    "EnvTemplate",
    "Placeholder",
    "check_templates",
    "parse_env_templates",
    "services_named",
]

#: What a placeholder may ask of an endpoint.
FIELDS: Final = ("url", "host", "port", "user", "password", "database")

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_HOLE = re.compile(r"([a-z][a-z0-9_]*)\.([a-z]+)(?::([A-Za-z0-9_]+))?\Z")


@dataclass(frozen=True)
class Placeholder:
    """``{service.field:driver}``: one value taken from an endpoint."""

    service: str
    field: str
    driver: str | None = None

    def render(self, endpoint: Endpoint) -> str:
        if self.field == "url":
            return endpoint.url_for(self.driver)
        return str(getattr(endpoint, self.field))

    def __str__(self) -> str:
        driver = f":{self.driver}" if self.driver else ""
        return "{" + f"{self.service}.{self.field}{driver}" + "}"


@dataclass(frozen=True)
class EnvTemplate:
    """One ``NAME=template`` line, parsed."""

    name: str
    parts: tuple[str | Placeholder, ...]

    @property
    def placeholders(self) -> tuple[Placeholder, ...]:
        return tuple(p for p in self.parts if isinstance(p, Placeholder))

    def render(self, endpoints: Mapping[str, Endpoint]) -> str:
        """The value, each placeholder filled from ``endpoints[service]``."""
        return "".join(
            part if isinstance(part, str) else part.render(endpoints[part.service])
            for part in self.parts
        )

    def __str__(self) -> str:
        text = "".join(
            part.replace("{", "{{").replace("}", "}}") if isinstance(part, str) else str(part)
            for part in self.parts
        )
        return f"{self.name}={text}"


def _parse_value(text: str) -> tuple[str | Placeholder, ...]:
    parts: list[str | Placeholder] = []
    literal: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if text.startswith("{{", i) or text.startswith("}}", i):
            literal.append(ch)
            i += 2
            continue
        if ch == "}":
            raise ValueError(f"a lone '}}' in {text!r} (write '}}}}' for a brace)")
        if ch == "{":
            end = text.find("}", i)
            match = _HOLE.match(text[i + 1 : end]) if end > 0 else None
            if match is None or match[2] not in FIELDS or (match[3] and match[2] != "url"):
                raise ValueError(
                    f"{text[i : end + 1] if end > 0 else text[i:]!r} is not a placeholder "
                    "{service.field} or {service.url:driver}; fields: " + ", ".join(FIELDS)
                )
            if literal:
                parts.append("".join(literal))
                literal = []
            parts.append(Placeholder(match[1], match[2], match[3]))
            i = end + 1
            continue
        literal.append(ch)
        i += 1
    if literal:
        parts.append("".join(literal))
    return tuple(parts)


def parse_env_templates(raw: str) -> tuple[EnvTemplate, ...]:
    """``NAME=template`` entries separated by newlines or spaces; ValueError when malformed.

    A value cannot contain spaces: that keeps the same text valid in an ini file, an
    environment variable and on the command line.
    """
    templates: list[EnvTemplate] = []
    seen: set[str] = set()
    for entry in raw.split():
        name, sep, value = entry.partition("=")
        if not sep or not _NAME.match(name):
            raise ValueError(f"{entry!r} is not NAME=template")
        if name in seen:
            raise ValueError(f"{name} is set twice")
        seen.add(name)
        templates.append(EnvTemplate(name, _parse_value(value)))
    if not templates:
        raise ValueError("no NAME=template entry")
    return tuple(templates)


def services_named(templates: Iterable[EnvTemplate]) -> tuple[str, ...]:
    """The services the templates' placeholders name, in order of first mention."""
    found: dict[str, None] = {}
    for template in templates:
        for placeholder in template.placeholders:
            found[placeholder.service] = None
    return tuple(found)


def check_templates(
    templates: Iterable[EnvTemplate],
    *,
    known_services: Iterable[str],
    schemes: Callable[[str], str],
) -> list[str]:
    """Problems with templates the grammar cannot see: unknown services and drivers.

    ``schemes`` gives a service's URL scheme with its default driver
    (``postgresql+psycopg``). A driver is accepted when it is the scheme's own base
    (``postgresql``: the plain libpq/CLI form) or a dialect SQLAlchemy can load for it;
    services whose scheme has no driver part (``redis``) take no other driver.
    """
    known = set(known_services)
    problems: list[str] = []
    for template in templates:
        for placeholder in template.placeholders:
            where = f"{template.name}: {placeholder}"
            if placeholder.service not in known:
                problems.append(
                    f"{where} names an unknown service; known: {', '.join(sorted(known))}"
                )
                continue
            driver = placeholder.driver
            if driver is None:
                continue
            scheme = schemes(placeholder.service)
            base = scheme.split("+", 1)[0]
            if driver == base:
                continue
            if "+" not in scheme or not _dialect_exists(base, driver):
                problems.append(
                    f"{where}: no driver {driver!r} for {placeholder.service} "
                    f"(SQLAlchemy knows no {base}+{driver} dialect)"
                )
    return problems


def _dialect_exists(base: str, driver: str) -> bool:
    try:
        from sqlalchemy.dialects import registry  # noqa: PLC0415 - only when a driver is named
        from sqlalchemy.exc import NoSuchModuleError  # noqa: PLC0415 - only when a driver is named
    except ImportError:  # without SQLAlchemy there is nothing to check against
        return True
    try:
        registry.load(f"{base}.{driver}")
    except NoSuchModuleError:
        return False
    return True
