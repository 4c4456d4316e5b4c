"""The project's pytest configuration file, found the way pytest finds it, for ``doctor``.

From a directory upwards, the first of ``pytest.ini``, ``.pytest.ini``,
``pyproject.toml`` (with ``[tool.pytest]`` or ``[tool.pytest.ini_options]``),
``tox.ini`` (``[pytest]``) and ``setup.cfg`` (``[tool:pytest]``) that has a pytest
section. Only the kit's keys (``integration_*``) are returned, as raw values.
"""

from __future__ import annotations

import configparser
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - pytest itself needs tomli there
    import tomli as tomllib  # type: ignore[import-not-found,no-redef,unused-ignore]

__all__ = ["find_ini"]

PREFIX = "integration_"


def _ini_section(path: Path, section: str) -> dict[str, Any] | None:
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read(path, encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError):
        return None
    if not parser.has_section(section):
        return None
    return dict(parser.items(section))


def _toml_section(path: Path) -> dict[str, Any] | None:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return None
    tool = data.get("tool", {}).get("pytest")
    if not isinstance(tool, dict):
        return None
    legacy = tool.get("ini_options")
    native = {k: v for k, v in tool.items() if k != "ini_options"}
    if native:
        return native
    return legacy if isinstance(legacy, dict) else None


def _read(path: Path) -> dict[str, Any] | None:
    if path.name in ("pytest.ini", ".pytest.ini"):
        return _ini_section(path, "pytest") or {}  # pytest.ini counts even when empty
    if path.name == "pyproject.toml":
        return _toml_section(path)
    if path.name == "tox.ini":
        return _ini_section(path, "pytest")
    return _ini_section(path, "tool:pytest")


def find_ini(start: Path) -> tuple[Path | None, dict[str, Any]]:
    """The configuration file for ``start`` and its ``integration_*`` values by setting name."""
    for directory in (start, *start.parents):
        for name in ("pytest.ini", ".pytest.ini", "pyproject.toml", "tox.ini", "setup.cfg"):
            path = directory / name
            if not path.is_file():
                continue
            section = _read(path)
            if section is None:
                continue
            values = {
                key[len(PREFIX) :]: value
                for key, value in section.items()
                if key.startswith(PREFIX)
            }
            return path, values
    return None, {}
