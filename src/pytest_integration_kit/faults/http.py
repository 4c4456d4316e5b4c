"""One vocabulary of HTTP faults, for in-process respx routes and the mock server's socket.

A fault is a respx side effect: ``route.respond(200, json=...)`` then
``route.side_effect = Delay(0.5)``. Each fault first decides a :class:`Plan` (pure data:
wait this long, then answer, or hang, reset, truncate, dribble). Where the route lives
decides how the plan is carried out:

- in-process (``http_mock``), the plan becomes what httpx itself would raise or return
  with a real server: ``ReadTimeout`` once the client's read timeout is spent,
  ``ReadError`` for a reset, ``RemoteProtocolError`` for a truncated body;
- on the mock server's socket, the plan is really done to the connection (the server
  catches :class:`SocketFault` and acts it out).
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from contextvars import ContextVar
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

import httpx

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Iterator

    import respx

__all__ = [
    "ConnectionReset",
    "Delay",
    "HttpFault",
    "Malformed",
    "Plan",
    "RateLimit",
    "Series",
    "SlowBody",
    "SocketFault",
    "Status",
    "Timeout",
    "Truncated",
]

Action = Literal["respond", "timeout", "reset", "truncate", "dribble"]

#: True while the mock server resolves a request: faults are then done to the socket.
ON_SOCKET: ContextVar[bool] = ContextVar("pytest_integration_kit_on_socket", default=False)
#: Set by the ``http_mock`` router: whether the client being served is async.
IN_ASYNC_CLIENT: ContextVar[bool | None] = ContextVar(
    "pytest_integration_kit_in_async_client", default=None
)


@dataclass(frozen=True)
class Plan:
    """What to do with one request: wait ``delay`` seconds, then carry out ``action``."""

    response: httpx.Response
    action: Action = "respond"
    delay: float = 0.0
    #: For ``truncate``: how many body bytes are sent before the connection closes.
    truncate_at: int = 0
    #: For ``dribble``: bytes per chunk and seconds between chunks.
    chunk_size: int = 1
    interval: float = 0.0


class SocketFault(Exception):
    """Raised by a fault while the mock server resolves a request; carries the plan."""

    def __init__(self, plan: Plan) -> None:
        super().__init__(plan.action)
        self.plan = plan


def base_response(request: httpx.Request, route: respx.Route | None) -> httpx.Response:
    """The response the route would give without the fault (200 and empty if none)."""
    template = route.return_value if route is not None else None
    if template is None:
        return httpx.Response(200, request=request)
    response = httpx.Response(
        template.status_code,
        headers=template.headers,
        stream=template.stream,
        request=request,
        extensions=dict(template.extensions),
    )
    response.read()
    return response


def _read_timeout(request: httpx.Request) -> float | None:
    timeout = request.extensions.get("timeout", {})
    value = timeout.get("read") if isinstance(timeout, dict) else None
    return float(value) if value is not None else None


def _in_async_client() -> bool:
    known = IN_ASYNC_CLIENT.get()
    if known is not None:
        return known
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class HttpFault:
    """Base class: a respx side effect that plans a fault and has it carried out."""

    def plan(self, request: httpx.Request, response: httpx.Response) -> Plan:
        """The plan for this request, given the route's normal ``response``."""
        raise NotImplementedError

    def __call__(
        self, request: httpx.Request, route: respx.Route | None = None, **_: Any
    ) -> httpx.Response | Awaitable[httpx.Response]:
        plan = self.plan(request, base_response(request, route))
        if ON_SOCKET.get():
            raise SocketFault(plan)
        if _in_async_client():
            return _carry_out_async(plan, request)
        return _carry_out(plan, request)


def _timed_out(request: httpx.Request) -> httpx.ReadTimeout:
    return httpx.ReadTimeout("timed out", request=request)


def _carry_out(plan: Plan, request: httpx.Request) -> httpx.Response:
    """In-process, sync client: wait and raise as httpx would against a real server."""
    limit = _read_timeout(request)
    if plan.action == "timeout":
        if limit is not None:
            time.sleep(limit)
        raise _timed_out(request)
    if limit is not None and plan.delay > limit:
        time.sleep(limit)
        raise _timed_out(request)
    time.sleep(plan.delay)
    if plan.action == "reset":
        raise httpx.ReadError("[Errno 104] Connection reset by peer", request=request)
    if plan.action == "truncate":
        return _truncated_response(plan, request)
    if plan.action == "dribble":
        return _dribbled_response(plan, request, limit)
    return plan.response


async def _carry_out_async(plan: Plan, request: httpx.Request) -> httpx.Response:
    """In-process, async client: as :func:`_carry_out`, sleeping on the event loop."""
    limit = _read_timeout(request)
    if plan.action == "timeout":
        if limit is not None:
            await asyncio.sleep(limit)
        raise _timed_out(request)
    if limit is not None and plan.delay > limit:
        await asyncio.sleep(limit)
        raise _timed_out(request)
    await asyncio.sleep(plan.delay)
    if plan.action == "reset":
        raise httpx.ReadError("[Errno 104] Connection reset by peer", request=request)
    if plan.action == "truncate":
        return _truncated_response(plan, request)
    if plan.action == "dribble":
        return _dribbled_response(plan, request, limit)
    return plan.response


def _truncated_response(plan: Plan, request: httpx.Request) -> httpx.Response:
    body = plan.response.content
    sent = body[: plan.truncate_at]
    message = (
        "peer closed connection without sending complete message body "
        f"(received {len(sent)} bytes, expected {len(body)})"
    )

    class TruncatedStream(httpx.SyncByteStream, httpx.AsyncByteStream):
        def __iter__(self) -> Iterator[bytes]:
            if sent:
                yield sent
            raise httpx.RemoteProtocolError(message, request=request)

        async def __aiter__(self) -> AsyncIterator[bytes]:
            if sent:
                yield sent
            raise httpx.RemoteProtocolError(message, request=request)

    return _with_stream(plan.response, request, TruncatedStream(), len(body))


def _dribbled_response(plan: Plan, request: httpx.Request, limit: float | None) -> httpx.Response:
    body = plan.response.content
    chunks = [body[i : i + plan.chunk_size] for i in range(0, len(body), plan.chunk_size)]
    stalls = limit is not None and plan.interval > limit

    class DribbleStream(httpx.SyncByteStream, httpx.AsyncByteStream):
        def __iter__(self) -> Iterator[bytes]:
            for index, chunk in enumerate(chunks):
                if index:
                    if stalls:
                        time.sleep(limit or 0.0)
                        raise _timed_out(request)
                    time.sleep(plan.interval)
                yield chunk

        async def __aiter__(self) -> AsyncIterator[bytes]:
            for index, chunk in enumerate(chunks):
                if index:
                    if stalls:
                        await asyncio.sleep(limit or 0.0)
                        raise _timed_out(request)
                    await asyncio.sleep(plan.interval)
                yield chunk

    return _with_stream(plan.response, request, DribbleStream(), len(body))


def _with_stream(
    response: httpx.Response, request: httpx.Request, stream: Any, length: int
) -> httpx.Response:
    headers = httpx.Headers(response.headers)
    headers["Content-Length"] = str(length)
    return httpx.Response(response.status_code, headers=headers, stream=stream, request=request)


# -- the vocabulary ------------------------------------------------------------------


@dataclass(frozen=True)
class Delay(HttpFault):
    """Answer after ``seconds`` (with the route's response, or ``then``'s plan)."""

    seconds: float
    then: HttpFault | None = None

    def plan(self, request: httpx.Request, response: httpx.Response) -> Plan:
        inner = self.then.plan(request, response) if self.then else Plan(response)
        return replace(inner, delay=inner.delay + self.seconds)


@dataclass(frozen=True)
class Timeout(HttpFault):
    """Never answer: the client's read timeout fires (in-process: at once if it has none)."""

    def plan(self, request: httpx.Request, response: httpx.Response) -> Plan:
        return Plan(response, action="timeout")


@dataclass(frozen=True)
class ConnectionReset(HttpFault):
    """Read the request, then reset the connection (TCP RST): httpx raises ``ReadError``."""

    def plan(self, request: httpx.Request, response: httpx.Response) -> Plan:
        return Plan(response, action="reset")


@dataclass(frozen=True)
class Status(HttpFault):
    """Answer with an error status (and optional body) instead of the route's response."""

    status_code: int = 503
    json: Any = None
    text: str | None = None
    headers: dict[str, str] | None = None

    def plan(self, request: httpx.Request, response: httpx.Response) -> Plan:
        return Plan(
            httpx.Response(
                self.status_code,
                json=self.json,
                text=self.text,
                headers=self.headers,
                request=request,
            )
        )


class RateLimit(HttpFault):
    """``limit`` requests per ``per`` seconds, then 429 with ``Retry-After`` till the window ends.

    Windows are fixed and start at the first request; thread-safe, so one limit can
    guard a route that many threads call.
    """

    def __init__(
        self,
        limit: int,
        per: float = 1.0,
        *,
        then: HttpFault | None = None,
        clock: Any = time.monotonic,
    ) -> None:
        if limit < 0 or per <= 0:
            raise ValueError("RateLimit needs limit >= 0 and per > 0")
        self.limit = limit
        self.per = per
        self.then = then
        self._clock = clock
        self._lock = threading.Lock()
        self._window_start: float | None = None
        self._used = 0

    def __repr__(self) -> str:
        return f"RateLimit({self.limit}, per={self.per})"

    def plan(self, request: httpx.Request, response: httpx.Response) -> Plan:
        with self._lock:
            now = self._clock()
            if self._window_start is None or now - self._window_start >= self.per:
                self._window_start, self._used = now, 0
            self._used += 1
            allowed = self._used <= self.limit
            remaining = self.per - (now - self._window_start)
        if allowed:
            return self.then.plan(request, response) if self.then else Plan(response)
        retry_after = max(1, math.ceil(remaining))
        return Plan(
            httpx.Response(
                429,
                headers={"Retry-After": str(retry_after)},
                json={"error": "rate limited", "limit": self.limit, "per_seconds": self.per},
                request=request,
            )
        )


@dataclass(frozen=True)
class Malformed(HttpFault):
    """The route's status and headers with a body that does not parse (bad JSON by default)."""

    body: bytes = b'{"data": [1, 2, '

    def plan(self, request: httpx.Request, response: httpx.Response) -> Plan:
        headers = httpx.Headers(response.headers)
        headers["Content-Length"] = str(len(self.body))
        headers.setdefault("Content-Type", "application/json")
        return Plan(
            httpx.Response(
                response.status_code, headers=headers, content=self.body, request=request
            )
        )


@dataclass(frozen=True)
class Truncated(HttpFault):
    """Promise the whole body (Content-Length), send ``after`` bytes of it, then close.

    ``after`` defaults to half the body. httpx raises ``RemoteProtocolError``.
    """

    after: int | None = None

    def plan(self, request: httpx.Request, response: httpx.Response) -> Plan:
        length = len(response.content)
        after = length // 2 if self.after is None else min(self.after, max(length - 1, 0))
        return Plan(response, action="truncate", truncate_at=after)


@dataclass(frozen=True)
class SlowBody(HttpFault):
    """Send the body ``chunk_size`` bytes at a time, ``interval`` seconds apart (dribble)."""

    interval: float = 0.05
    chunk_size: int = 1

    def plan(self, request: httpx.Request, response: httpx.Response) -> Plan:
        return Plan(
            response, action="dribble", chunk_size=max(1, self.chunk_size), interval=self.interval
        )


class Series(HttpFault):
    """One step per request, in order, then the route's own response for good.

    A step is a fault, an ``httpx.Response``, or None for the route's response:
    ``Series(Status(503), ConnectionReset(), None)`` models a service that recovers on
    the third try. (respx's own side-effect lists work too, but are typed for responses
    and exceptions only.)
    """

    def __init__(self, *steps: HttpFault | httpx.Response | None) -> None:
        self.steps = steps
        self._next = 0
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Series{self.steps!r}"

    def plan(self, request: httpx.Request, response: httpx.Response) -> Plan:
        with self._lock:
            index = self._next
            self._next += 1
        step = self.steps[index] if index < len(self.steps) else None
        if isinstance(step, HttpFault):
            return step.plan(request, response)
        if isinstance(step, httpx.Response):
            return Plan(
                httpx.Response(
                    step.status_code, headers=step.headers, content=step.read(), request=request
                )
            )
        return Plan(response)
