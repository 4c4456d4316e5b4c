"""Responses whose end reaches a live client only once the application is done.

Over a real socket a response goes out before the application has finished the
request: FastAPI closes a yield dependency's session after sending the response,
Starlette runs background tasks after it, and a WSGI server calls the response's
``close`` (a streamed Flask response's teardown, middleware that removes a scoped
session there) after writing it. A test that went on at once —
its own session on the connection the request's session was still rolling back, or the
next request — raced that end (``savepoint … does not exist``). The in-process clients
do not: they return once the application's call has returned.

These wrappers give :class:`~.live.LiveServer` the same order: a response's status and
headers and its last part are held until the application's call has returned (ASGI)
or its response has been closed (WSGI) — a client may act on the status alone, without
reading the body. A streamed body's other parts go out as the application sends them,
and the headers with the first of them.

Nothing here imports pytest.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable, Iterator

    Message = dict[str, Any]
    Send = Callable[[Message], Awaitable[None]]
    Receive = Callable[[], Awaitable[Message]]
    ASGIApp = Callable[[dict[str, Any], Receive, Send], Awaitable[None]]
    StartResponse = Callable[..., Any]
    WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

__all__ = ["asgi_ending_after_the_app", "wsgi_ending_after_the_app"]


def asgi_ending_after_the_app(app: ASGIApp) -> ASGIApp:
    """``app``, whose HTTP responses' start and last body message go once ``app`` returns."""

    async def ending_after(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope.get("type") != "http":
            await app(scope, receive, send)
            return
        held: list[Message] = []

        async def holding_the_end(message: Message) -> None:
            # The start waits for the first body: a client may act on the status alone.
            kind = message.get("type")
            if kind == "http.response.start" or (
                kind == "http.response.body" and not message.get("more_body")
            ):
                held.append(message)
                return
            while held:
                await send(held.pop(0))
            await send(message)

        try:
            await app(scope, receive, holding_the_end)
        finally:
            while held:
                await send(held.pop(0))

    return ending_after


def wsgi_ending_after_the_app(app: WSGIApp) -> WSGIApp:
    """``app``, whose responses' last chunk (with the headers, when it is the only one) is
    yielded once the response is closed."""

    def ending_after(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        return _last_after_close(app(environ, start_response))

    return ending_after


def _last_after_close(response: Iterable[bytes]) -> Iterator[bytes]:
    pending: bytes | None = None
    try:
        for chunk in response:
            if pending is not None:
                yield pending
            pending = chunk
    finally:
        close = getattr(response, "close", None)
        if close is not None:
            close()
    if pending is not None:
        yield pending
