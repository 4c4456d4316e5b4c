"""What a spec hands the backends when a server is started: who logs in, what the
local backend runs, and what a container from a warm image runs.

Apart from :mod:`~pytest_integration_kit.services.spec` so that the specs' import (every
run makes them, for their settings) does not make these dataclasses: a run that starts
no server never uses them (issue #11). ``spec`` still exports their names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from pathlib import Path

__all__ = ["Credentials", "LocalLaunch", "WarmLaunch"]


@dataclass(frozen=True)
class Credentials:
    """Who logs in: the password is random per session."""

    user: str
    password: str = field(repr=False)
    database: str


@dataclass(frozen=True)
class LocalLaunch:
    """What the local backend runs once the data directory is prepared."""

    command: Sequence[str]
    env: dict[str, str] = field(default_factory=dict)
    #: Files holding secrets that can go once the server is ready.
    remove_when_ready: Sequence[Path] = ()


@dataclass(frozen=True)
class WarmLaunch:
    """How a container started from a warm image runs instead of its image's entrypoint:
    ``script``, run by ``/bin/sh -c``, with ``env`` added to the container's environment
    (where secrets go: a command line is readable by every user of the host)."""

    script: str
    env: Mapping[str, str] = field(default_factory=dict)
