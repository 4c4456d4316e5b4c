"""Behind live_server a client gets a response's status once the application is done
with the request (a session's close after FastAPI's response, a WSGI response's close),
and a streamed body still streams."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import httpx

from pytest_integration_kit.apps.app import AppHost, Kind
from pytest_integration_kit.apps.live import LiveServer

Send = Callable[[dict[str, Any]], Awaitable[None]]
#: How long the applications below go on after their response (the client must wait).
AFTER = 0.3


def _status_after_done(app: Any, kind: Kind, done: list[float]) -> bool:
    """Whether the client got the status only once the application had finished."""
    with (
        AppHost(app, kind=kind, lifespan=False) as host,
        LiveServer(host) as server,
        httpx.stream("GET", server.url, timeout=10) as response,  # the body left unread
    ):
        status_at = time.monotonic()
        assert response.status_code == 200
    assert done, "the application never finished"
    return status_at >= done[0]


def _read_in_two(app: Any, kind: Kind, read_first: threading.Event) -> bytes:
    """The whole body, read as a first part (before the application sends its last one,
    which it does once ``read_first`` is set) and the rest."""
    with (
        AppHost(app, kind=kind, lifespan=False) as host,
        LiveServer(host) as server,
        httpx.stream("GET", server.url, timeout=10) as response,
    ):
        parts = response.iter_raw()
        first = next(parts)
        read_first.set()
        return first + b"".join(parts)


def test_an_asgi_status_comes_after_the_app_returns() -> None:
    done: list[float] = []

    async def app(scope: dict[str, Any], receive: Any, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})
        await asyncio.sleep(AFTER)  # FastAPI closing a yield dependency's session
        done.append(time.monotonic())

    assert _status_after_done(app, "asgi", done)


def test_a_wsgi_status_comes_after_the_response_is_closed() -> None:
    done: list[float] = []

    class Closing:
        def __iter__(self) -> Iterator[bytes]:
            yield b"ok"

        def close(self) -> None:  # Flask's teardown, a scoped session's removal
            time.sleep(AFTER)
            done.append(time.monotonic())

    def app(environ: dict[str, Any], start_response: Any) -> Closing:
        start_response("200 OK", [("Content-Length", "2")])
        return Closing()

    assert _status_after_done(app, "wsgi", done)


def test_a_streamed_asgi_body_still_streams() -> None:
    read_first = threading.Event()
    done: list[float] = []

    async def app(scope: dict[str, Any], receive: Any, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"a", "more_body": True})
        # Only a client that got the first part lets the body go on.
        assert await asyncio.to_thread(read_first.wait, 10)
        await send({"type": "http.response.body", "body": b"b"})
        done.append(time.monotonic())

    assert _read_in_two(app, "asgi", read_first) == b"ab"
    assert done


def test_a_streamed_wsgi_body_still_streams() -> None:
    read_first = threading.Event()

    def app(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Length", "3")])
        yield b"a"
        yield b"b"
        assert read_first.wait(10)  # the first part reached the client before this
        yield b"c"

    assert _read_in_two(app, "wsgi", read_first) == b"abc"
