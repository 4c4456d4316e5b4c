"""How a server comes to exist: docker, local binaries, or a URL."""

from __future__ import annotations

from pytest_integration_kit.backends.base import Backend, RunningServer, ServerOptions
from pytest_integration_kit.backends.docker import DockerBackend
from pytest_integration_kit.backends.local import LocalBackend
from pytest_integration_kit.backends.url import UrlBackend

__all__ = [
    "Backend",
    "DockerBackend",
    "LocalBackend",
    "RunningServer",
    "ServerOptions",
    "UrlBackend",
    "default_backends",
]


def default_backends() -> dict[str, Backend]:
    """One instance of each built-in backend, by name."""
    return {b.name: b for b in (DockerBackend(), LocalBackend(), UrlBackend())}
