"""User-style lifecycle code (a script, no pytest) that must type-check under mypy --strict."""

from __future__ import annotations

from pathlib import Path

from pytest_integration_kit.__main__ import main as kit_command
from pytest_integration_kit.backends import default_backends
from pytest_integration_kit.lifecycle import (
    KeptServers,
    Reaper,
    ReapReport,
    ServerRequest,
    ServerSet,
    WarmDataDirs,
)
from pytest_integration_kit.services.endpoint import Endpoint
from pytest_integration_kit.settings import resolve_settings


def start_both(cache_dir: Path) -> tuple[Endpoint, Endpoint]:
    settings = resolve_settings(cli={"backend": "local", "reuse": "yes"}, ini={})
    servers = ServerSet.for_process(
        settings,
        backends=default_backends(),
        session_id="myscript",
        project=str(Path.cwd()),
        cache_dir=cache_dir,
    )
    postgres, redis = ServerRequest("postgres"), ServerRequest("redis")
    servers.start_all([postgres, redis])
    endpoints = servers.get(postgres).endpoint, servers.get(redis).endpoint
    for record in servers.summary():
        print(record.service, record.reused, record.seconds_to_ready)
    servers.stop_all()  # kept ones live on
    return endpoints


def tidy(cache_dir: Path) -> int:
    report: ReapReport = Reaper(docker=False).reap_dead()
    print(report.describe())
    removed = KeptServers(cache_dir).remove_all()
    WarmDataDirs(cache_dir).clear()
    return len(removed) + kit_command(["kept", "list", "--cache-dir", str(cache_dir)])
