"""httpx clients whose requests go through the application, in process.

:class:`AppClient` (sync) and :class:`AsyncAppClient` are plain ``httpx.Client`` /
``httpx.AsyncClient`` subclasses: the whole httpx API, ``base_url`` ``http://testserver``.
An ASGI application's requests are run in the :class:`~.app.AppHost`'s loop (the one
its lifespan ran in), a WSGI application's through httpx's ``WSGITransport``.
``as_user(user)`` gives a client carrying what the login callable returned for that
user (see :mod:`.login`).

Nothing here imports pytest.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Final

import httpx

if TYPE_CHECKING:
    from collections.abc import Callable

    from pytest_integration_kit.apps.app import AppHost
    from pytest_integration_kit.apps.login import Login

__all__ = ["AppAsyncTransport", "AppClient", "AppTransport", "AsyncAppClient"]

BASE_URL: Final = "http://testserver"
#: The client address the application sees.
CLIENT: Final = ("127.0.0.1", 50000)


def _copy(request: httpx.Request, content: bytes) -> httpx.Request:
    return httpx.Request(
        request.method,
        request.url,
        headers=request.headers,
        content=content,
        extensions=request.extensions,
    )


class AppTransport(httpx.BaseTransport):
    """A sync transport into the application (its loop for ASGI; WSGI in this thread)."""

    def __init__(self, host: AppHost) -> None:
        self.host = host
        if host.kind == "asgi":
            self._asgi = httpx.ASGITransport(app=host.asgi, client=CLIENT)
        else:
            self._wsgi = httpx.WSGITransport(app=host.app, remote_addr=CLIENT[0])

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if self.host.kind == "wsgi":
            return self._wsgi.handle_request(request)
        content = request.read()

        async def call() -> tuple[int, httpx.Headers, bytes, dict[str, Any]]:
            response = await self._asgi.handle_async_request(_copy(request, content))
            body = await response.aread()
            return response.status_code, response.headers, body, dict(response.extensions)

        status, headers, body, extensions = self.host.run(call())
        return httpx.Response(status, headers=headers, content=body, extensions=extensions)


class AppAsyncTransport(httpx.AsyncBaseTransport):
    """An async transport into the application, from any event loop."""

    def __init__(self, host: AppHost) -> None:
        self.sync = AppTransport(host)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        content = await request.aread()
        sync = self.sync
        if sync.host.kind == "wsgi":
            response = await asyncio.to_thread(sync.handle_request, _copy(request, content))
            body = await asyncio.to_thread(response.read)
            return httpx.Response(response.status_code, headers=response.headers, content=body)

        async def call() -> tuple[int, httpx.Headers, bytes]:
            response = await sync._asgi.handle_async_request(_copy(request, content))
            return response.status_code, response.headers, await response.aread()

        status, headers, body = await sync.host.run_async(call())
        return httpx.Response(status, headers=headers, content=body)


class AppClient(httpx.Client):
    """A sync httpx client into the application; ``as_user(user)`` for a logged-in one."""

    def __init__(
        self,
        transport: AppTransport,
        *,
        login: Login | None = None,
        on_response: list[Callable[[httpx.Response], None]] | None = None,
        **options: Any,
    ) -> None:
        options.setdefault("base_url", BASE_URL)
        hooks = options.setdefault("event_hooks", {})
        hooks.setdefault("response", []).extend(on_response or [])
        super().__init__(transport=transport, **options)
        self._app_transport = transport
        self._login = login
        self._on_response = list(on_response or [])
        self._children: list[AppClient] = []

    def _child(self) -> AppClient:
        child = AppClient(
            self._app_transport,
            login=self._login,
            on_response=self._on_response,
            base_url=self.base_url,
            headers=self.headers,
            follow_redirects=self.follow_redirects,
        )
        self._children.append(child)
        return child

    def as_user(self, user: Any, *, cache: bool = True) -> AppClient:
        """A client whose requests carry ``user``'s login (headers and/or cookies).

        The login callable runs on a fresh client (this one's cookies are untouched).
        With ``cache`` (the default) a user's login is made once per run and reused:
        pass ``cache=False`` for a user the test itself created.
        """
        if self._login is None:
            raise RuntimeError(
                "as_user() needs a login callable: set integration_login = module:attr "
                "(a function given the client and a user, returning headers or cookies)"
            )
        credentials = self._login.credentials(user, self._child, cache=cache)
        client = self._child()
        client.headers.update(credentials.headers)
        client.cookies.update(credentials.cookies)
        return client

    def close(self) -> None:
        for child in self._children:
            child.close()
        self._children.clear()
        super().close()


class AsyncAppClient(httpx.AsyncClient):
    """An async httpx client into the application; ``await as_user(user)``."""

    def __init__(
        self,
        transport: AppAsyncTransport,
        *,
        login: Login | None = None,
        on_response: list[Callable[[httpx.Response], None]] | None = None,
        **options: Any,
    ) -> None:
        options.setdefault("base_url", BASE_URL)
        hooks = options.setdefault("event_hooks", {})
        hooks.setdefault("response", []).extend(_async_hook(h) for h in on_response or [])
        super().__init__(transport=transport, **options)
        self._app_transport = transport
        self._login = login
        self._on_response = list(on_response or [])
        self._children: list[AsyncAppClient | AppClient] = []

    async def as_user(self, user: Any, *, cache: bool = True) -> AsyncAppClient:
        """An async client carrying ``user``'s login (the login callable gets a sync client,
        run in a thread; cached like :meth:`AppClient.as_user`)."""
        if self._login is None:
            raise RuntimeError(
                "as_user() needs a login callable: set integration_login = module:attr "
                "(a function given the client and a user, returning headers or cookies)"
            )
        login = self._login

        def fresh() -> AppClient:
            sync = AppClient(self._app_transport.sync, base_url=self.base_url)
            self._children.append(sync)
            return sync

        credentials = await asyncio.to_thread(login.credentials, user, fresh, cache=cache)
        client = AsyncAppClient(
            self._app_transport,
            login=login,
            on_response=self._on_response,
            base_url=self.base_url,
            headers=self.headers,
        )
        client.headers.update(credentials.headers)
        client.cookies.update(credentials.cookies)
        self._children.append(client)
        return client

    async def aclose(self) -> None:
        for child in self._children:
            if isinstance(child, AsyncAppClient):
                await child.aclose()
            else:
                child.close()
        self._children.clear()
        await super().aclose()


def _async_hook(hook: Callable[[httpx.Response], None]) -> Callable[[httpx.Response], Any]:
    async def call(response: httpx.Response) -> None:
        await response.aread()
        hook(response)

    return call
