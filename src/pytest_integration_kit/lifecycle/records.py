"""What one process writes down about a server so another can use, stop or reap it.

A :class:`ServerRecord` is a small JSON document: the endpoint (with its password, so
files holding records are private to the user), the backend and a *handle* saying how
to reach the server again: a container id, or a process id and its work directory.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from typing import Any

from pytest_integration_kit.lifecycle.paths import read_json, write_json
from pytest_integration_kit.services.endpoint import Endpoint

__all__ = ["ServerRecord", "digest", "read_json", "write_json"]


def digest(*parts: object) -> str:
    """A short stable hash of ``parts`` (their reprs), for file names and reuse matching."""
    text = "\x1f".join(repr(p) for p in parts)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class ServerRecord:
    """A server started (or failed to start) for a run, or kept for the next ones."""

    key: str
    service: str
    backend: str
    #: ``Endpoint`` fields; None when the start failed.
    endpoint: dict[str, Any] | None = field(default=None, repr=False)
    #: How to reach the server again: ``container_id``, or ``pid``/``workdir``/``log``.
    handle: dict[str, Any] = field(default_factory=dict)
    seconds_to_ready: float = 0.0
    #: True when a kept server from an earlier run was attached instead of started.
    reused: bool = False
    #: True when the server outlives the run (``integration_reuse``).
    kept: bool = False
    #: Which process started it: ``main`` or an xdist worker id.
    started_by: str = "main"
    #: Wall-clock time (epoch seconds) when it was started.
    started_at: float = 0.0
    #: When the start failed: ``unavailable`` or ``start``, and the message.
    error_kind: str | None = None
    error: str | None = None
    #: For kept servers: the configuration hash a later run must match.
    config_hash: str = ""
    #: Under ``auto``: why each backend tried before the one used could not run it.
    tried: tuple[str, ...] = ()
    #: True when the server started from a cached initialised data directory.
    warm: bool = False

    def endpoint_object(self) -> Endpoint:
        if self.endpoint is None:
            raise ValueError(f"the record {self.key} has no endpoint (its start failed)")
        return Endpoint(**self.endpoint)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ServerRecord:
        names = {f.name for f in dataclasses.fields(cls)}
        fields = {k: v for k, v in data.items() if k in names}
        if "tried" in fields:
            fields["tried"] = tuple(fields["tried"])
        return cls(**fields)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def endpoint_fields(endpoint: Endpoint) -> dict[str, Any]:
    return dataclasses.asdict(endpoint)
