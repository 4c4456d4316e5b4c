"""What a fixture asks for: the key that equal requests share one server by.

Apart from :mod:`~pytest_integration_kit.lifecycle.servers` so that the fixture modules,
which build their requests when the plugin is imported, need not import the lifecycle
layer (a run that needs no server never does).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["ServerRequest"]


class ServerRequest(NamedTuple):
    """Which server a fixture asks for. Equal requests share one server.

    Every field left None is taken from the settings at start time. A NamedTuple, not
    a frozen dataclass: the plugin's import makes this class (the fixture factories
    build their requests then), and a dataclass compiles its methods (issue #11).
    """

    service: str
    backend: str | None = None
    image: str | None = None
    url: str | None = None  # not in the repr: it may hold a password
    bin_dir: Path | None = None
    port: int | None = None
    startup_timeout: float | None = None
    #: The xdist worker this server is private to (``integration_redis_per_worker``);
    #: empty: shared by every process of the run.
    worker: str = ""

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{name}={value!r}" for name, value in self._asdict().items() if name != "url"
        )
        return f"ServerRequest({shown})"

    @property
    def key(self) -> str:
        """A file-name-safe identity, equal across the processes of a run."""
        parts: list[object] = [
            self.service,
            self.backend,
            self.image,
            self.url,
            str(self.bin_dir),
            self.port,
            self.startup_timeout,
        ]
        if self.worker:
            parts.append(self.worker)
        # Imported here: the fixtures build their requests at plugin import, and only a
        # run that needs a server asks for a key (records is the lifecycle's file format).
        from pytest_integration_kit.lifecycle.records import digest  # noqa: PLC0415

        return f"{self.service}-" + digest(*parts)
