"""How a server comes to exist: docker, local binaries, or a URL."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pytest_integration_kit.exports import lazy_exports

if TYPE_CHECKING:
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

# Imported on first use: a run that needs no server must not pay for the whole layer
# (mypy reads the imports above instead).
if not TYPE_CHECKING:
    __getattr__ = lazy_exports(
        __name__,
        {
            "Backend": "base",
            "DockerBackend": "docker",
            "LocalBackend": "local",
            "RunningServer": "base",
            "ServerOptions": "base",
            "UrlBackend": "url",
        },
    )


def default_backends() -> dict[str, Backend]:
    """One instance of each built-in backend, by name."""
    from pytest_integration_kit.backends.docker import DockerBackend  # noqa: PLC0415 - the backends load with the first server set
    from pytest_integration_kit.backends.local import LocalBackend  # noqa: PLC0415 - see above
    from pytest_integration_kit.backends.url import UrlBackend  # noqa: PLC0415 - see above

    return {b.name: b for b in (DockerBackend(), LocalBackend(), UrlBackend())}
