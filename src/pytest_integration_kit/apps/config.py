"""The application's settings: their part of the settings table, and their parsers.

``integration_env`` and friends configure this layer, so they are declared here, as each
service's own settings are with its spec; ``settings_table`` adds them last. Each parser
raises ValueError on a bad raw value; the resolution turns that into a usage error
naming the setting, the value and what is allowed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from pytest_integration_kit.settings.setting import (
    BOOL_ALLOWED,
    Setting,
    boolean,
    module_attr,
    openapi_source,
)

# The template parser is imported by the one setting using it, when set: every run
# builds the settings table, few set integration_env.
if TYPE_CHECKING:
    from pytest_integration_kit.services.templates import EnvTemplate

__all__ = [
    "EnvTemplates",
    "SecretText",
    "app_settings",
    "module_attrs",
    "parse_env",
    "secret_text",
]


class EnvTemplates(tuple["EnvTemplate", ...]):
    """The parsed ``integration_env`` entries; shown as the user wrote them."""

    __slots__ = ()

    def __str__(self) -> str:
        return " ".join(str(template) for template in self)


def parse_env(raw: str) -> EnvTemplates:
    from pytest_integration_kit.services.templates import parse_env_templates  # noqa: PLC0415

    return EnvTemplates(parse_env_templates(raw))


def _is_module_attr(value: str) -> bool:
    module, sep, attr = value.partition(":")
    return bool(sep and module and attr) and all(
        part.isidentifier() for part in module.split(".") + attr.split(".")
    )


def module_attrs(raw: str) -> tuple[str, ...]:
    """One or more ``module:attr`` references, separated by commas or whitespace."""
    entries = tuple(part for part in raw.replace(",", " ").split() if part)
    if not entries or not all(_is_module_attr(entry) for entry in entries):
        raise ValueError
    return entries


class SecretText:
    """A setting's secret value: ``str()`` shows a mask, :meth:`reveal` the text."""

    MASK: Final = "***"

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __str__(self) -> str:
        return self.MASK if self._value else "(empty)"

    __repr__ = __str__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SecretText) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def secret_text(raw: str) -> SecretText:
    """Any text without whitespace or control characters; empty is allowed."""
    if any(ch.isspace() or not ch.isprintable() for ch in raw):
        raise ValueError
    return SecretText(raw)


def app_settings() -> list[Setting]:
    """The application's settings, in the order the table lists them."""
    # -- the user's application wired in (integration_env and friends) -------------------
    settings = [
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
            module_attr,
            allowed="module:attr, e.g. sqlmodel:Session",
            metavar="MODULE:ATTR",
            example="sqlmodel:Session",
            bad_example="sqlmodel",
        ),
        Setting(
            "redis_client_class",
            "The client class of redis_client (a redis.Redis subclass) or of "
            "redis_async_client (a redis.asyncio.Redis subclass).",
            module_attr,
            allowed="module:attr, e.g. myapp.queue:QueueRedis",
            metavar="MODULE:ATTR",
            example="myapp.queue:QueueRedis",
            bad_example="QueueRedis",
        ),
        Setting(
            "redis_password",
            "The password of Redis servers the kit starts; empty for none (the server is "
            "still reachable from this machine only: on 127.0.0.1, or a container's own "
            "address on the engine's bridge). Unset: a random one per session.",
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
            boolean,
            allowed=BOOL_ALLOWED,
            default=False,
            metavar="BOOL",
            kind="bool",
            example="true",
            bad_example="per-test",
        ),
    ]

    # -- clients into the user's application (app_client, live_server, …) ---------------
    settings += [
        Setting(
            "app",
            "Your ASGI or WSGI application, for app_client, app_async_client and live_server.",
            module_attr,
            allowed="module:attr, e.g. app.main:app",
            metavar="MODULE:ATTR",
            example="app.main:app",
            bad_example="app.main",
        ),
        Setting(
            "app_session",
            "A FastAPI session dependency (e.g. get_session) that app clients answer with "
            "the test's own postgres_session / mysql_session.",
            module_attr,
            allowed="module:attr, e.g. app.db:get_session",
            metavar="MODULE:ATTR",
            example="app.db:get_session",
            bad_example="get_session",
        ),
        Setting(
            "login",
            "A callable given an app client and a user, returning headers or cookies: what "
            "app_client.as_user(user) carries (made once per user and run).",
            module_attr,
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
    return settings
