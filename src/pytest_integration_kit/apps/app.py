"""The user's application: loaded from ``module:attr``, told ASGI from WSGI, and hosted.

:class:`AppHost` owns the one event loop an ASGI application runs in for the whole
session — a daemon thread — and drives its lifespan protocol there once: startup when
the host starts, shutdown when it closes. Every client (sync, async, the live socket)
sends its requests into that loop, so what the lifespan built (pools, clients, caches
bound to a loop) serves every request. A WSGI application needs no loop.

Nothing here imports pytest.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from typing import TYPE_CHECKING, Any, Final, Literal

from pytest_integration_kit.errors import ConfigError, IntegrationKitError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Coroutine, MutableMapping

__all__ = ["AppHost", "AppStartupError", "app_kind"]

Kind = Literal["asgi", "wsgi"]

#: Seconds the lifespan's startup and shutdown may take, and a request into the loop.
LIFESPAN_TIMEOUT: Final = 60.0
#: Seconds a test's teardown waits for requests still running in the application.
IDLE_TIMEOUT = 10.0


class AppStartupError(IntegrationKitError):
    """The application's lifespan startup failed or did not finish in time."""


def app_kind(app: Any, spec: str = "integration_app") -> Kind:
    """``"asgi"`` or ``"wsgi"``, read from the callable's signature; ConfigError otherwise.

    ASGI: a coroutine function (or an object whose ``__call__`` is one) taking
    ``(scope, receive, send)``; WSGI: a callable taking ``(environ, start_response)``.
    """
    if not callable(app):
        raise ConfigError(f"{spec} is a {type(app).__name__}, not an ASGI or WSGI application")
    call = app if inspect.isfunction(app) or inspect.ismethod(app) else type(app).__call__
    if inspect.iscoroutinefunction(call) or inspect.iscoroutinefunction(app):
        return "asgi"
    try:
        parameters = [
            p
            for p in inspect.signature(app).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
    except (TypeError, ValueError):
        parameters = []
    if len(parameters) == 3:
        return "asgi"
    if len(parameters) == 2:
        return "wsgi"
    raise ConfigError(
        f"{spec} is a {type(app).__name__} whose call takes {len(parameters)} argument(s): "
        "expected an ASGI application (scope, receive, send) or a WSGI one "
        "(environ, start_response)"
    )


def _failure(kind: str, message: str) -> str:
    """A failed lifespan step in a line (a traceback's last line first), then the rest."""
    step = "startup" if "startup" in kind else "shutdown"
    lines = [line for line in str(message).strip().splitlines() if line.strip()]
    if not lines:
        return f"the application's lifespan {step} failed"
    head = f"the application's lifespan {step} failed: {lines[-1].strip()}"
    return head if len(lines) == 1 else head + "\n" + "\n".join(lines)


class AppHost:
    """An application, its event loop thread (ASGI) and its lifespan, run once.

    Use as a context manager, or :meth:`start` and :meth:`close`.
    """

    def __init__(
        self,
        app: Any,
        *,
        kind: Kind | None = None,
        lifespan: bool = True,
        spec: str = "integration_app",
    ) -> None:
        self.app = app
        self.kind: Kind = kind or app_kind(app, spec)
        self.lifespan = lifespan
        #: What the lifespan put in its ``state``; copied into every request's scope.
        self.state: dict[str, Any] = {}
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lifespan_task: asyncio.Future[None] | None = None
        self._events: asyncio.Queue[dict[str, Any]] | None = None
        self._started: asyncio.Future[None] | None = None
        self._stopped: asyncio.Future[None] | None = None
        # Requests still inside the application: FastAPI runs a dependency's cleanup
        # (the app's session.close/commit) after the response is sent, so a test can
        # reach its teardown while the app still uses the test's connection.
        self._inflight = 0
        self._idle = threading.Condition()

    def __enter__(self) -> AppHost:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def asgi(
        self,
        scope: MutableMapping[str, Any],
        receive: Callable[[], Awaitable[Any]],
        send: Callable[[Any], Awaitable[None]],
    ) -> None:
        """The application as every client calls it: the lifespan's state in each scope."""
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        scope = {**scope, "state": dict(self.state)}
        with self._idle:
            self._inflight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            with self._idle:
                self._inflight -= 1
                self._idle.notify_all()

    def wait_idle(self, timeout: float = IDLE_TIMEOUT) -> bool:
        """Wait until no request is running in the application (its cleanup included),
        so a test's teardown never races the app on the test's connection."""
        with self._idle:
            return self._idle.wait_for(lambda: self._inflight == 0, timeout)

    def start(self) -> None:
        """Start the loop thread and run the lifespan's startup (ASGI); nothing for WSGI."""
        if self.kind != "asgi" or self.loop is not None:
            return
        loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(ready.set)
            loop.run_forever()

        self.loop = loop
        self._thread = threading.Thread(target=run, name="integration-app-loop", daemon=True)
        self._thread.start()
        ready.wait(LIFESPAN_TIMEOUT)
        if self.lifespan:
            try:
                self.run(self._startup(), timeout=LIFESPAN_TIMEOUT)
            except BaseException:
                self.close()
                raise

    def run(self, coroutine: Coroutine[Any, Any, Any], timeout: float | None = None) -> Any:
        """Run ``coroutine`` in the application's loop and wait for its result."""
        if self.loop is None:
            coroutine.close()
            raise RuntimeError("the application host is not started")
        future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()
            raise

    async def run_async(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        """Await ``coroutine`` run in the application's loop from another loop."""
        if self.loop is None:
            coroutine.close()
            raise RuntimeError("the application host is not started")
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coroutine, self.loop))

    async def _startup(self) -> None:
        loop = asyncio.get_running_loop()
        self._events = asyncio.Queue()
        self._started = loop.create_future()
        self._stopped = loop.create_future()
        await self._events.put({"type": "lifespan.startup"})
        self._lifespan_task = asyncio.ensure_future(self._lifespan())
        try:
            await asyncio.wait_for(asyncio.shield(self._started), LIFESPAN_TIMEOUT)
        except TimeoutError:
            raise AppStartupError(
                f"the application's lifespan startup did not finish in {LIFESPAN_TIMEOUT:.0f} s"
            ) from None

    async def _lifespan(self) -> None:
        assert self._events is not None
        assert self._started is not None
        events = self._events
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}}
        scope["state"] = self.state

        async def send(message: dict[str, Any]) -> None:
            kind = message["type"]
            done = self._started if "startup" in kind else self._stopped
            if done is None or done.done():
                return
            if kind.endswith(".failed"):
                done.set_exception(AppStartupError(_failure(kind, message.get("message", ""))))
            else:
                done.set_result(None)

        try:
            await self.app(scope, events.get, send)
        except BaseException as exc:
            if not self._started.done():
                # Raised before answering: the application has no lifespan (as uvicorn's
                # "auto" mode reads it). Requests are served without one.
                self._started.set_result(None)
                self._lifespan_task = None
            elif self._stopped is not None and not self._stopped.done():
                self._stopped.set_exception(AppStartupError(f"lifespan shutdown raised {exc!r}"))

    async def _shutdown(self) -> None:
        if self._lifespan_task is None or self._events is None or self._stopped is None:
            return
        if self._lifespan_task.done():
            return
        await self._events.put({"type": "lifespan.shutdown"})
        try:
            await asyncio.wait_for(asyncio.shield(self._stopped), LIFESPAN_TIMEOUT)
        finally:
            self._lifespan_task.cancel()

    def close(self) -> None:
        """Run the lifespan's shutdown, then stop the loop and its thread."""
        loop, thread = self.loop, self._thread
        if loop is None or thread is None:
            return
        try:
            if self.lifespan and self._lifespan_task is not None:
                self.run(self._shutdown(), timeout=LIFESPAN_TIMEOUT)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(LIFESPAN_TIMEOUT)
            if not thread.is_alive():
                loop.close()
            self.loop = self._thread = None
