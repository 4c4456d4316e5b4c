"""A package's public names, imported from their modules on first use.

Importing the plugin imports every package on the way to its fixture modules; a package
``__init__`` that imported its public names at once would load its whole layer (and
psutil, filelock, http.client…) into a run that needs no server.
"""

from __future__ import annotations

import importlib
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

__all__ = ["lazy_exports"]


def lazy_exports(package: str, homes: Mapping[str, str]) -> Callable[[str], object]:
    """The module ``__getattr__`` of ``package``: ``homes`` names, for each public name,
    the submodule (relative to ``package``) that defines it.

    Any other name is looked for as a submodule (``package.submodule`` worked when the
    ``__init__`` imported it); failing that, AttributeError.
    """

    def __getattr__(name: str) -> object:
        home = homes.get(name)
        if home is None:
            if name.startswith("__"):
                raise AttributeError(f"module {package!r} has no attribute {name!r}")
            try:
                return importlib.import_module(f"{package}.{name}")
            except ModuleNotFoundError as exc:
                if exc.name != f"{package}.{name}":
                    raise
                raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        value = getattr(importlib.import_module(f"{package}.{home}"), name)
        setattr(sys.modules[package], name, value)  # found as a plain attribute next time
        return value

    return __getattr__
