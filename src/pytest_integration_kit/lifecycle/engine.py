"""A look at the Docker engine without docker-py: which containers carry a label, what
one container or image is.

Every run reaps what dead sessions left behind, and most runs find nothing. Importing
docker-py and testcontainers to learn that costs a run that needs no server more than
the rest of the plugin together, so the reaper first asks the engine itself, with one
HTTP request on its unix socket (a socket, not even http.client), and imports docker-py
only when there is something to remove. A warm start on a kept container asks the same
way whether it still runs and which image its name now means (:func:`inspected`).
Where the engine is not a local unix socket (``DOCKER_HOST=tcp://…``, ``ssh://…``) this
module answers None: use docker-py.
"""

from __future__ import annotations

import json
import os
import socket
import time
from typing import Any, Final, Literal
from urllib.parse import quote, quote_plus

__all__ = ["ABSENT", "engine_socket", "inspected", "labelled_containers", "labelled_networks"]

#: The engine's socket when ``DOCKER_HOST`` is unset (what docker-py uses too).
DEFAULT_SOCKET = "/var/run/docker.sock"
#: Seconds to wait for the engine's answer (a busy engine answers a list in milliseconds).
TIMEOUT = 5.0
#: The most of an answer read (a list of every container on a busy host fits many times).
MAX_ANSWER = 64 * 1024 * 1024


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
    listed = _labelled("/containers/json?all=1&filters=", label)
    if listed is None:
        return None
    return [
        {"id": str(item.get("Id", "")), "labels": dict(item.get("Labels") or {})}
        for item in listed
        if isinstance(item, dict)
    ]


def labelled_networks(label: str) -> list[str] | None:
    """The ids of the engine's networks with ``label``: as :func:`labelled_containers`."""
    listed = _labelled("/networks?filters=", label)
    if listed is None:
        return None
    return [str(item.get("Id", "")) for item in listed if isinstance(item, dict)]


def _labelled(query: str, label: str) -> list[Any] | None:
    """The engine's answer to ``query`` filtered by ``label``: a list (empty when no
    engine listens on the socket), or None when the engine is not a local unix socket or
    answered something else than a list."""
    path = engine_socket()
    if path is None:
        return None
    if not os.path.exists(path):
        return []
    listed = _get(path, query + quote(json.dumps({"label": [label]})))
    if not isinstance(listed, list):
        return None if listed is not _NO_ENGINE else []
    return listed


#: What :func:`inspected` answers when the engine has no such container or image.
ABSENT: Final[Any] = object()


def inspected(kind: Literal["containers", "images"], ref: str) -> dict[str, Any] | None:
    """The engine's inspection of one container (id) or image (name or id), as docker-py's
    ``.attrs``; :data:`ABSENT` when the engine has none such; None when the engine is not
    a local unix socket, is not there, or answered something unexpected (ask docker-py,
    which says what is wrong)."""
    path = engine_socket()
    if path is None:
        return None
    # Quoted as docker-py quotes it (an image name keeps its registry's '/' and ':').
    answer = _answer(path, f"/{kind}/{quote_plus(ref, safe='/:')}/json")
    if answer is None or answer is _NO_ENGINE:
        return None
    if _status(answer) == b"404":
        return ABSENT  # type: ignore[no-any-return]
    attrs = _json_body(answer)
    return attrs if isinstance(attrs, dict) else None


#: What :func:`_get` answers when nothing listens on the socket.
_NO_ENGINE: Any = object()


def _get(path: str, url: str) -> Any:
    """The engine's JSON answer to ``GET url``; None when unsure, _NO_ENGINE when absent."""
    answer = _answer(path, url)
    if answer is None or answer is _NO_ENGINE:
        return answer
    return _json_body(answer)


def _answer(path: str, url: str) -> Any:
    """The engine's whole answer to ``GET url``; None when unsure, _NO_ENGINE when absent.

    One HTTP/1.0 request, read to the end of the connection: the engine then answers
    without keep-alive, and no HTTP client (http.client pulls in ssl and email) is needed.
    """
    deadline = time.monotonic() + TIMEOUT
    chunks: list[bytes] = []
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(TIMEOUT)
            sock.connect(path)
            sock.sendall(f"GET {url} HTTP/1.0\r\nHost: localhost\r\n\r\n".encode("ascii"))
            size = 0
            while chunk := sock.recv(65536):
                chunks.append(chunk)
                size += len(chunk)
                if size > MAX_ANSWER or time.monotonic() > deadline:
                    return None
    except (ConnectionRefusedError, FileNotFoundError):
        return _NO_ENGINE
    except OSError:  # a timeout, a permission error: docker-py says what it is
        return None
    return b"".join(chunks)


def _status(answer: bytes) -> bytes | None:
    """The status code of an HTTP answer (``b"200"``), None when it is not one."""
    head, separator, _ = answer.partition(b"\r\n\r\n")
    parts = head.split(b"\r\n", 1)[0].split(None, 2)
    if not separator or len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
        return None
    return parts[1]


def _json_body(answer: bytes) -> Any:
    """The JSON body of a 200 answer; None for any other status or an unreadable one."""
    if _status(answer) != b"200":
        return None
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")[1:]
    headers = {
        k.strip().lower(): v.strip().lower() for k, _, v in (h.partition(b":") for h in lines)
    }
    if b"chunked" in headers.get(b"transfer-encoding", b""):
        body = _dechunked(body)
    try:
        return json.loads(body)
    except ValueError:
        return None


def _dechunked(body: bytes) -> bytes:
    """A chunked body's data (b"" when malformed: not JSON, so None above)."""
    data = bytearray()
    while body:
        size_line, separator, rest = body.partition(b"\r\n")
        try:
            size = int(size_line.split(b";")[0], 16)
        except ValueError:
            return b""
        if not separator or size == 0:
            break
        data += rest[:size]
        body = rest[size + 2 :]
    return bytes(data)
