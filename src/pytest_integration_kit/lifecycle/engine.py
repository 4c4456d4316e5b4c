"""A look at the Docker engine without docker-py: which containers carry a label.

Every run reaps what dead sessions left behind, and most runs find nothing. Importing
docker-py and testcontainers to learn that costs a run that needs no server more than
the rest of the plugin together, so the reaper first asks the engine itself, with one
HTTP request on its unix socket (the standard library only), and imports docker-py
only when there is something to remove. Where the engine is not a local unix socket
(``DOCKER_HOST=tcp://…``, ``ssh://…``) this module answers None: use docker-py.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
from typing import Any
from urllib.parse import quote

__all__ = ["labelled_containers"]

#: The engine's socket when ``DOCKER_HOST`` is unset (what docker-py uses too).
DEFAULT_SOCKET = "/var/run/docker.sock"
#: Seconds to wait for the engine's answer (a busy engine answers a list in milliseconds).
TIMEOUT = 5.0


class _UnixConnection(http.client.HTTPConnection):
    """HTTP on a unix socket (the engine's API is HTTP/1.1 on it)."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


def engine_socket() -> str | None:
    """The engine's unix socket as docker-py would find it, or None when it is not one."""
    host = os.environ.get("DOCKER_HOST", "")
    if not host:
        return DEFAULT_SOCKET
    if host.startswith("unix://"):
        return host[len("unix://") :]
    return None


def labelled_containers(label: str) -> list[dict[str, Any]] | None:
    """The engine's containers (running or not) with ``label`` (``key`` or ``key=value``).

    Each as ``{"id": …, "labels": {…}}``. An empty list when no engine listens on the
    socket (then nothing of ours can be there either); None when the engine is not a
    local unix socket or answered something unexpected — ask docker-py instead.
    """
    path = engine_socket()
    if path is None:
        return None
    if not os.path.exists(path):
        return []
    listed = _get(path, "/containers/json?all=1&filters=" + quote(json.dumps({"label": [label]})))
    if not isinstance(listed, list):
        return None if listed is not _NO_ENGINE else []
    return [
        {"id": str(item.get("Id", "")), "labels": dict(item.get("Labels") or {})}
        for item in listed
        if isinstance(item, dict)
    ]


#: What :func:`_get` answers when nothing listens on the socket.
_NO_ENGINE: Any = object()


def _get(path: str, url: str) -> Any:
    """The engine's JSON answer to ``GET url``; None when unsure, _NO_ENGINE when absent."""
    connection = _UnixConnection(path, TIMEOUT)
    try:
        connection.request("GET", url)
        response = connection.getresponse()
        body = response.read()
    except (ConnectionRefusedError, FileNotFoundError):
        return _NO_ENGINE
    except OSError:  # a timeout, a permission error: docker-py says what it is
        return None
    finally:
        connection.close()
    if response.status != 200:
        return None
    try:
        return json.loads(body)
    except ValueError:
        return None
