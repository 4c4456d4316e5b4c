"""How long servers live and who shares them: lazy parallel start, sharing across xdist
workers, servers kept between runs, warm local start and reaping of dead sessions."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pytest_integration_kit.exports import lazy_exports

if TYPE_CHECKING:
    from pytest_integration_kit.lifecycle.kept import REUSE_LABEL, KeptServers
    from pytest_integration_kit.lifecycle.owner import Owner
    from pytest_integration_kit.lifecycle.reaper import Reaper, ReapReport
    from pytest_integration_kit.lifecycle.requests import ServerRequest
    from pytest_integration_kit.lifecycle.run import RunDirectory
    from pytest_integration_kit.lifecycle.servers import ServerSet
    from pytest_integration_kit.lifecycle.starting import StartRecord
    from pytest_integration_kit.lifecycle.warm import WarmDataDirs

__all__ = [
    "REUSE_LABEL",
    "KeptServers",
    "Owner",
    "ReapReport",
    "Reaper",
    "RunDirectory",
    "ServerRequest",
    "ServerSet",
    "StartRecord",
    "WarmDataDirs",
]

# Imported on first use: a run that needs no server must not pay for the whole layer
# (mypy reads the imports above instead).
if not TYPE_CHECKING:
    __getattr__ = lazy_exports(
        __name__,
        {
            "KeptServers": "kept",
            "Owner": "owner",
            "REUSE_LABEL": "kept",
            "ReapReport": "reaper",
            "Reaper": "reaper",
            "RunDirectory": "run",
            "ServerRequest": "requests",
            "ServerSet": "servers",
            "StartRecord": "starting",
            "WarmDataDirs": "warm",
        },
    )
