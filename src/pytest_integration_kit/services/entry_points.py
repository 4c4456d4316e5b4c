"""The entry points of one group, found without parsing every installed distribution.

``importlib.metadata.entry_points(group=…)`` makes a distribution object of every
installed package, reads and parses each one's ``entry_points.txt`` and then keeps the
group's: every pytest run pays for it (issue #11), and more the more packages an
environment has. Here each ``*.dist-info`` / ``*.egg-info`` directory on ``sys.path``
is listed, its ``entry_points.txt`` read as bytes and only one naming the group is
parsed (by ``importlib.metadata`` itself); the declaring distribution's name is read
from the ``Name:`` line of its metadata file, not by ``email``'s parser (whose import
and parse every run paid). The answer is the same: the first distribution of a name
on the path wins, as there. Where distributions may come from
elsewhere (a zip or egg on the path, a meta path finder of another kind), the standard
scan is used.
"""

from __future__ import annotations

import importlib.machinery
import importlib.metadata
import os
import pathlib
import re
import sys

__all__ = ["declared_entry_points"]

_SEPARATORS = re.compile(r"[-_.]+")
_METADATA_DIRS = (".dist-info", ".egg-info")


def declared_entry_points(group: str) -> list[tuple[importlib.metadata.EntryPoint, str]]:
    """The group's entry points, each with the name of the distribution declaring it,
    in the order ``importlib.metadata.entry_points`` finds them."""
    paths = _plain_path()
    if paths is None:
        return _standard_scan(group)
    needle = group.encode()
    found: list[tuple[importlib.metadata.EntryPoint, str]] = []
    seen: set[str] = set()
    for directory in paths:
        try:
            children = os.listdir(directory or ".")
        except OSError:
            continue
        for child in children:
            if not child.lower().endswith(_METADATA_DIRS):
                continue
            stem = os.path.splitext(child)[0]
            # importlib.metadata's key: the name before the first "-", normalised.
            key = _SEPARATORS.sub("_", stem.partition("-")[0]).lower()
            if key in seen:
                continue
            seen.add(key)
            path = os.path.join(directory or ".", child)
            try:
                with open(os.path.join(path, "entry_points.txt"), "rb") as file:
                    if needle not in file.read():
                        continue
            except OSError:  # no such file (most packages), or not a directory
                continue
            dist = importlib.metadata.PathDistribution(pathlib.Path(path))
            declared = [ep for ep in dist.entry_points if ep.group == group]
            if declared:
                name = _declared_name(dist)
                found += [(ep, name) for ep in declared]
    return found


def _declared_name(dist: importlib.metadata.PathDistribution) -> str:
    """``dist.name``, from the first ``Name:`` header of its metadata file (the headers
    end at the first blank line); ``dist.name`` itself where there is none."""
    for filename in ("METADATA", "PKG-INFO"):
        text = dist.read_text(filename)
        if text is None:
            continue
        for line in text.splitlines():
            if not line.strip():
                break
            key, sep, value = line.partition(":")
            if sep and key.strip().lower() == "name" and value.strip():
                return value.strip()
        break
    return dist.name


def _plain_path() -> list[str] | None:
    """``sys.path`` when only directories on it can hold distributions; else None."""
    for finder in sys.meta_path:
        if finder is not importlib.machinery.PathFinder and hasattr(finder, "find_distributions"):
            return None
    paths = []
    for entry in sys.path:
        if not isinstance(entry, str) or entry.endswith(".egg") or os.path.isfile(entry):
            return None
        paths.append(entry)
    return paths


def _standard_scan(group: str) -> list[tuple[importlib.metadata.EntryPoint, str]]:
    found = importlib.metadata.entry_points(group=group)
    # A distribution's name is parsed from its metadata file at every ask: once here.
    names = {id(ep.dist): ep.dist.name for ep in found if ep.dist is not None}
    return [(ep, names[id(ep.dist)] if ep.dist is not None else "?") for ep in found]
