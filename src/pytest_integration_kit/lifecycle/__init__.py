"""How long servers live and who shares them: lazy parallel start, sharing across xdist
workers, servers kept between runs, warm local start and reaping of dead sessions."""

from __future__ import annotations

from pytest_integration_kit.lifecycle.kept import REUSE_LABEL, KeptServers
from pytest_integration_kit.lifecycle.owner import Owner
from pytest_integration_kit.lifecycle.reaper import Reaper, ReapReport
from pytest_integration_kit.lifecycle.run import RunDirectory
from pytest_integration_kit.lifecycle.servers import ServerRequest, ServerSet, StartRecord
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
