"""What a spec hands the backends when a server is started: who logs in, and what the
local backend runs.

Apart from :mod:`~pytest_integration_kit.services.spec` so that the specs' import (every
run makes them, for their settings) does not make these dataclasses: a run that starts
no server never uses them (issue #11). ``spec`` still exports both names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

__all__ = ["Credentials", "LocalLaunch"]


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
