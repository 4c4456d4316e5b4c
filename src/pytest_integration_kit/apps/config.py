"""What the application settings accept: parsers for the settings table.

Each raises ValueError on a bad raw value; the table turns that into a usage error
naming the setting, the value and what is allowed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

# The template parser is imported by the one setting using it, when set: every run
# builds the settings table, few set integration_env.
if TYPE_CHECKING:
    from pytest_integration_kit.services.templates import EnvTemplate

__all__ = ["EnvTemplates", "SecretText", "module_attrs", "parse_env", "secret_text"]


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
