"""A real HTTP/1.1 server on 127.0.0.1 serving respx routes, for clients that are not httpx.

The routes are a plain ``respx.Router`` (same patterns, side effects and ``route.calls``
as ``http_mock``); the server turns each request on its socket into an ``httpx.Request``,
resolves it and writes the response back. HTTP/1.1 framing (request parsing, chunked
bodies, ``Expect: 100-continue``, keep-alive and pipelining, response heads) is h11's;
the faults of :mod:`pytest_integration_kit.faults.http` are really done to the
connection around it. ``TCP_NODELAY``; HTTPS on request, with a throwaway CA (trustme).
"""

from __future__ import annotations

import asyncio
import socket
import traceback
from typing import TYPE_CHECKING, Any

import h11
import httpx
import respx
from respx.models import AllMockedAssertionError

from pytest_integration_kit.faults.http import ON_SOCKET, Plan, SocketFault
from pytest_integration_kit.faults.loop_thread import LoopThread
from pytest_integration_kit.mocks.router import describe_request, describe_routes
from pytest_integration_kit.mocks.wire import (
    MAX_HEAD,
    READ_SIZE,
    next_event,
    raw_body,
    refuse,
    reset,
    response_head,
)

if TYPE_CHECKING:
    import ssl
    from pathlib import Path

    from pytest_integration_kit.mocks.certificate import ThrowawayCertificate

__all__ = ["MockServer"]


class MockServer:
    """An HTTP/1.1 server on a random port of 127.0.0.1 answering from respx routes.

    Usable as a context manager or with :meth:`start`/:meth:`stop`. :meth:`reset` gives
    it fresh routes (cheap: the pytest fixture calls it between tests).
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        https: bool = False,
        assert_all_called: bool = True,
        assert_all_mocked: bool = True,
    ) -> None:
        self.host = host
        self._requested_port = port
        self.https = https
        self.port = 0
        self._assert_all_called = assert_all_called
        self._assert_all_mocked = assert_all_mocked
        self._loop = LoopThread("pytest-integration-kit mock server")
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.StreamWriter] = set()
        self.certificate: ThrowawayCertificate | None = None
        self.router = respx.Router(assert_all_mocked=True)
        self.unmatched: list[httpx.Request] = []
        self.errors: list[str] = []

    # -- lifecycle ------------------------------------------------------------------

    def start(self) -> MockServer:
        if self._server is not None:
            return self
        context: ssl.SSLContext | None = None
        if self.https:
            from pytest_integration_kit.mocks.certificate import (  # noqa: PLC0415
                ThrowawayCertificate,
            )

            self.certificate = ThrowawayCertificate.create()
            context = self.certificate.server_context()
        self._loop.start()
        self._server = self._loop.run(self._listen(context))
        self.port = int(self._server.sockets[0].getsockname()[1])
        self.reset()
        return self

    async def _listen(self, context: ssl.SSLContext | None) -> asyncio.Server:
        return await asyncio.start_server(
            self._serve, self.host, self._requested_port, ssl=context, limit=READ_SIZE
        )

    def stop(self) -> None:
        server = self._server
        if server is None:
            return
        self._server = None

        async def close() -> None:
            server.close()
            for writer in list(self._connections):
                writer.transport.abort()
            await server.wait_closed()

        try:
            self._loop.run(close(), timeout=10.0)
        finally:
            self._loop.stop()
            if self.certificate is not None:
                self.certificate.remove()

    def __enter__(self) -> MockServer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    # -- routes ---------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:54321`` (no trailing slash)."""
        scheme = "https" if self.https else "http"
        return f"{scheme}://{self.host}:{self.port}"

    @property
    def ca_path(self) -> Path | None:
        """The CA certificate to trust (``verify=str(server.ca_path)``, ``curl --cacert``)
        when serving HTTPS."""
        return self.certificate.ca_path if self.certificate else None

    def client_ssl_context(self) -> ssl.SSLContext:
        """A client context trusting only this server's CA (``verify=`` for httpx)."""
        if self.certificate is None:
            raise RuntimeError("this mock server does not serve HTTPS (https=True)")
        return self.certificate.client_context()

    def reset(
        self, *, assert_all_called: bool | None = None, assert_all_mocked: bool | None = None
    ) -> None:
        """Forget every route, call and miss: the next test starts blank.

        ``assert_all_mocked=False`` answers unmatched requests 200 (empty), as respx does.
        """
        if assert_all_called is not None:
            self._assert_all_called = assert_all_called
        if assert_all_mocked is not None:
            self._assert_all_mocked = assert_all_mocked
        self.router = respx.Router(
            assert_all_called=self._assert_all_called,
            assert_all_mocked=self._assert_all_mocked,
            base_url=self.url,
        )
        self.unmatched = []
        self.errors = []

    def route(self, *patterns: Any, name: str | None = None, **lookups: Any) -> respx.Route:
        return self.router.route(*patterns, name=name, **lookups)

    def request(self, method: str, url: str | None = None, **lookups: Any) -> respx.Route:
        return self.router.request(method, url, **lookups)

    def get(self, url: str | None = None, **lookups: Any) -> respx.Route:
        return self.router.get(url, **lookups)

    def post(self, url: str | None = None, **lookups: Any) -> respx.Route:
        return self.router.post(url, **lookups)

    def put(self, url: str | None = None, **lookups: Any) -> respx.Route:
        return self.router.put(url, **lookups)

    def patch(self, url: str | None = None, **lookups: Any) -> respx.Route:
        return self.router.patch(url, **lookups)

    def delete(self, url: str | None = None, **lookups: Any) -> respx.Route:
        return self.router.delete(url, **lookups)

    def head(self, url: str | None = None, **lookups: Any) -> respx.Route:
        return self.router.head(url, **lookups)

    def options(self, url: str | None = None, **lookups: Any) -> respx.Route:
        return self.router.options(url, **lookups)

    @property
    def routes(self) -> respx.models.RouteList:
        return self.router.routes

    @property
    def calls(self) -> respx.models.CallList:
        return self.router.calls

    def problems(self, *, check_uncalled: bool | None = None) -> list[str]:
        """What is wrong at the end of a test: misses, side effects that crashed, unused routes."""
        found: list[str] = []
        if self.unmatched:
            found.append(
                "mock_server: requests no route matched (answered 500):\n"
                + "\n".join(f"  - {describe_request(r)}" for r in self.unmatched)
                + f"\nregistered routes:\n{describe_routes(self.router.routes)}"
            )
        found += [f"mock_server: a side effect raised:\n{error}" for error in self.errors]
        check = self._assert_all_called if check_uncalled is None else check_uncalled
        uncalled = [route for route in self.router.routes if not route.called]
        if check and uncalled:
            found.append(
                "mock_server: routes never called (opt out with "
                "@pytest.mark.http_mock(assert_all_called=False)):\n" + describe_routes(uncalled)
            )
        return found

    # -- the socket side --------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raw = writer.get_extra_info("socket")
        if raw is not None:
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._connections.add(writer)
        connection = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
        try:
            while True:
                try:
                    request = await self._read_request(connection, reader, writer)
                except h11.RemoteProtocolError as exc:
                    await refuse(connection, writer, exc)
                    break
                if request is None:  # the client closed between requests
                    break
                plan = await self._resolve(request)
                if not await self._carry_out(plan, request, connection, reader, writer):
                    break
                if connection.our_state is not h11.DONE:
                    break
                if connection.their_state is not h11.DONE:
                    break  # Connection: close, or HTTP/1.0: h11 says MUST_CLOSE
                connection.start_next_cycle()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._connections.discard(writer)
            if not writer.transport.is_closing():
                writer.close()

    async def _read_request(
        self,
        connection: h11.Connection,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> httpx.Request | None:
        """The next request on the connection (None if the client closed), body and all."""
        event = await next_event(connection, reader)
        if not isinstance(event, h11.Request):
            return None
        if connection.they_are_waiting_for_100_continue:
            writer.write(
                connection.send(
                    h11.InformationalResponse(status_code=100, headers=[], reason=b"Continue")
                )
            )
        parts: list[bytes] = []
        while not isinstance(body_event := await next_event(connection, reader), h11.EndOfMessage):
            if isinstance(body_event, h11.Data):
                parts.append(bytes(body_event.data))
            else:  # ConnectionClosed mid-body: h11 raises before this, but be sure
                raise h11.RemoteProtocolError("the request body was cut short", 400)
        body = b"".join(parts)
        chunked = any(
            name.lower() == b"transfer-encoding" and b"chunked" in value.lower()
            for name, value in event.headers.raw_items()
        )
        headers = [
            (name.decode("latin-1"), value.decode("latin-1"))
            for name, value in event.headers.raw_items()
            if not (chunked and name.lower() == b"transfer-encoding")
        ]
        if chunked:
            headers.append(("Content-Length", str(len(body))))
        target = event.target.decode("latin-1")
        if target.startswith(("http://", "https://")):
            target = "/" + target.split("/", 3)[3] if target.count("/") >= 3 else "/"
        method = event.method.decode("ascii")
        return httpx.Request(method, self.url + target, headers=headers, content=body)

    async def _resolve(self, request: httpx.Request) -> Plan:
        token = ON_SOCKET.set(True)
        router = self.router
        try:
            resolved = await router.aresolve(request)
        except SocketFault as fault:
            return fault.plan
        except AllMockedAssertionError:
            self.unmatched.append(request)
            text = (
                f"mock_server: no route matches {describe_request(request)}\n"
                f"registered routes:\n{describe_routes(router.routes)}\n"
            )
            return Plan(httpx.Response(500, text=text))
        except httpx.TimeoutException:
            return Plan(httpx.Response(200), action="timeout")
        except httpx.TransportError:
            return Plan(httpx.Response(200), action="reset")
        except Exception:
            error = traceback.format_exc()
            self.errors.append(error)
            return Plan(httpx.Response(500, text=f"mock_server: side effect raised\n{error}"))
        finally:
            ON_SOCKET.reset(token)
        response = resolved.response
        assert isinstance(response, httpx.Response)
        return Plan(response)

    async def _carry_out(
        self,
        plan: Plan,
        request: httpx.Request,
        connection: h11.Connection,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> bool:
        """Do the plan to the connection; return whether it may serve another request."""
        if plan.delay:
            await asyncio.sleep(plan.delay)
        if plan.action == "timeout":
            while await reader.read(READ_SIZE):  # hold the connection until the client leaves
                pass
            return False
        if plan.action == "reset":
            reset(writer)
            return False
        body = await raw_body(plan.response)
        with_body = request.method != "HEAD" and bool(body)
        try:
            head = connection.send(response_head(plan.response, len(body)))
            if plan.action == "truncate":
                sent = body[: plan.truncate_at] if with_body else b""
                writer.write(head + (connection.send(h11.Data(data=sent)) if sent else b""))
                await writer.drain()
                writer.close()  # the rest of the promised body never comes
                return False
            if plan.action == "dribble" and with_body:
                writer.write(head)
                for start in range(0, len(body), plan.chunk_size):
                    if start:
                        await asyncio.sleep(plan.interval)
                    piece = body[start : start + plan.chunk_size]
                    writer.write(connection.send(h11.Data(data=piece)))
                    await writer.drain()
                writer.write(connection.send(h11.EndOfMessage()))
                return True
            data = connection.send(h11.Data(data=body)) if with_body else b""
            writer.write(head + data + connection.send(h11.EndOfMessage()))
        except h11.LocalProtocolError as exc:  # a route's response HTTP/1.1 cannot carry
            self.errors.append(f"{describe_request(request)}: cannot send the response: {exc}")
            reset(writer)
            return False
        await writer.drain()
        return True
