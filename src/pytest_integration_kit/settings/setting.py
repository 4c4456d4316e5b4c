"""What a setting is (:class:`Setting`), and the parsers of its values.

A parser takes the raw value as text and returns the value, or raises: a ValueError (or
any exception: :func:`~pytest_integration_kit.settings.resolve_settings` catches them
all) for a value it does not accept. The resolution turns that into one line of a
:class:`~pytest_integration_kit.errors.ConfigError` (exit 4) naming the setting, the
value (:func:`shown_value`: masked, cut short), what is allowed and, where safe to
print, why (:func:`failure_reason`).

No ``from __future__ import annotations`` here, on purpose: every run imports this
module (issue #11), and a NamedTuple turns each string annotation into a ForwardRef,
which compiles its string: eleven ``compile`` calls at import for :class:`Setting`.
Evaluated annotations cost a fraction of that; their names are imported at run time
(``collections.abc`` and ``typing`` are loaded long before).
"""

import math
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final, NamedTuple
from urllib.parse import urlsplit

__all__ = [
    "BOOL_ALLOWED",
    "FALSE_WORDS",
    "KINDS",
    "MAX_CLONE_POOL_SIZE",
    "TRUE_WORDS",
    "Setting",
    "boolean",
    "cache_directory",
    "choice",
    "clone_pool_size",
    "config_file",
    "directory",
    "failure_reason",
    "filesystem_path",
    "host_list",
    "image",
    "lease_seconds",
    "mask_url_password",
    "module_attr",
    "openapi_source",
    "positive_seconds",
    "seed_entries",
    "shown_value",
    "url_for",
]

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


def choice(*choices: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip().lower()
        if value not in choices:
            raise ValueError
        return value

    return parse


def boolean(raw: str) -> bool:
    value = raw.strip().lower()
    if value in TRUE_WORDS:
        return True
    if value in FALSE_WORDS:
        return False
    raise ValueError


def positive_seconds(raw: str) -> float:
    value = float(raw)
    if not 0 < value < math.inf:  # also rejects NaN
        raise ValueError
    return value


def lease_seconds(raw: str) -> float:
    value = float(raw)
    if not 1 <= value <= 86400:  # also rejects NaN
        raise ValueError
    return value


def filesystem_path(raw: str) -> Path:
    """``raw`` as a path, ``~`` expanded; no NUL byte, no line break, not blank."""
    value = raw.strip()
    if not value or "\0" in value or "\n" in value or "\r" in value:
        raise ValueError
    return Path(value).expanduser()  # RuntimeError for ~nosuchuser: reported like the rest


def directory(raw: str) -> Path:
    path = filesystem_path(raw)
    if not path.is_dir():
        raise ValueError
    return path


def cache_directory(raw: str) -> Path:
    """An absolute path (``~`` allowed) that is a directory or does not exist yet."""
    path = filesystem_path(raw)
    if not path.is_absolute() or (path.exists() and not path.is_dir()):
        raise ValueError
    return path


# Patterns are compiled (and cached by ``re``) at their first use, not at import: every
# run imports this module, few set an image or print a URL with a password.

#: Docker's reference grammar, loosely: [registry[:port]/]name[/name…][:tag][@digest].
_IMAGE = (
    r"(?:[A-Za-z0-9.-]+(?::[0-9]+)?/)?"
    r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?"
    r"(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?"
)


def image(raw: str) -> str:
    value = raw.strip()
    if len(value) > 512 or not re.fullmatch(_IMAGE, value):
        raise ValueError
    return value


def url_for(schemes: tuple[str, ...]) -> Callable[[str], str]:
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


def module_attr(raw: str) -> str:
    value = raw.strip()
    module, sep, attr = value.partition(":")
    if not sep or not module or not attr:
        raise ValueError
    if not all(part.isidentifier() for part in module.split(".") + attr.split(".")):
        raise ValueError
    return value


def config_file(raw: str) -> str:
    value = raw.strip()
    if not value.endswith((".ini", ".toml")) or not value.isprintable():
        raise ValueError
    return value


def seed_entries(raw: str) -> tuple[str, ...]:
    entries = tuple(part for part in raw.replace(",", " ").split() if part)
    if not entries:
        raise ValueError
    for entry in entries:
        if "\0" in entry or not entry.isprintable():
            raise ValueError
        if not entry.lower().endswith(".sql"):
            module_attr(entry)
    return entries


def clone_pool_size(raw: str) -> int:
    value = int(raw)
    if not 1 <= value <= MAX_CLONE_POOL_SIZE:
        raise ValueError
    return value


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


def openapi_source(raw: str) -> bool | str:
    """A boolean, or the path of a JSON or YAML OpenAPI document."""
    word = raw.strip().lower()
    if word in TRUE_WORDS or word in FALSE_WORDS:
        return word in TRUE_WORDS
    path = str(filesystem_path(raw))
    if not path.endswith((".json", ".yaml", ".yml")):
        raise ValueError
    return path


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


def shown_value(raw: object, setting: Setting) -> str:
    """``raw`` for an error message: masked when secret, cut short when long."""
    text = raw if isinstance(raw, str) else None
    if text is None:
        return repr(raw)
    if setting.secret:
        text = mask_url_password(text)
    if len(text) > SHOWN_CHARS:
        return f"{text[:SHOWN_CHARS]!r}... ({len(text)} characters)"
    return repr(text)


def failure_reason(exc: Exception, setting: Setting) -> str:
    """What a parser's exception adds to "expected …", if anything safe to print."""
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if setting.secret or not detail:
        return ""  # a URL parser's message may quote the password
    if isinstance(exc, ValueError) and not isinstance(exc, UnicodeError):
        return ""  # "could not convert …": nothing the message does not say already
    if len(detail) > SHOWN_CHARS:
        detail = detail[:SHOWN_CHARS] + "..."
    return f" ({type(exc).__name__}: {detail})"
