"""The settings: one table, each setting resolved from CLI, environment and ini file.

Every setting has one name, spelled three ways: ini key ``integration_x``, environment
variable ``INTEGRATION_X`` and command-line option ``--integration-x``. Precedence is
CLI > env > ini > default. Unset is told apart from falsy with a sentinel, and each
resolved value remembers where it came from so the report header can say so.

Raw values come as strings (CLI, env, ini files) or as native TOML values (pytest 9's
``[tool.pytest]``: booleans, numbers, lists); both are read the same way. Any exception a
parser raises becomes part of one :class:`ConfigError`: a bad value never escapes as a
traceback.

This package knows nothing of pytest: ``plugin.py`` feeds it the raw values. Here is the
resolution (:func:`resolve_settings`, :func:`conflicts`) and what it gives
(:class:`ResolvedSetting`, :class:`Settings`); :mod:`.setting` holds what a setting is
and the parsers of its values, :mod:`.table` the table. Import every name from here:
the parts may move.

No ``from __future__ import annotations``, as in :mod:`.setting`: ResolvedSetting is a
NamedTuple, and string annotations cost it a ``compile`` each at every run's import.
"""

import os
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Final, NamedTuple

from pytest_integration_kit.errors import ConfigError
from pytest_integration_kit.settings.setting import (
    MAX_CLONE_POOL_SIZE,
    Setting,
    failure_reason,
    mask_url_password,
    shown_value,
)
from pytest_integration_kit.settings.table import BACKENDS, service_settings, settings_table

__all__ = [
    "BACKENDS",
    "MAX_CLONE_POOL_SIZE",
    "ResolvedSetting",
    "Setting",
    "Settings",
    "conflicts",
    "mask_url_password",
    "resolve_settings",
    "service_settings",
    "settings_table",
]


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Final = _Unset()


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
                f"{setting.ini}: {shown_value(raw, setting)} is not allowed (set by {where}); "
                f"expected {setting.allowed}{failure_reason(exc, setting)}"
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
