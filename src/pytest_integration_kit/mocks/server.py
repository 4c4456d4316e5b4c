"""A real HTTP/1.1 server on 127.0.0.1 serving respx routes, for clients that are not httpx.

The routes are a plain ``respx.Router`` (same patterns, side effects and ``route.calls``
as ``http_mock``); the server turns each request on its socket into an ``httpx.Request``,
resolves it and writes the response back. Faults from
:mod:`pytest_integration_kit.faults.http` are really done to the connection.
Keep-alive, ``TCP_NODELAY``; HTTPS on request, with a throwaway CA (trustme).
"""

from __future__ import annotations

import asyncio
import socket
import struct
import traceback
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

import httpx
import respx
from respx.models import AllMockedAssertionError

from pytest_integration_kit.faults.http import ON_SOCKET, Plan, SocketFault
from pytest_integration_kit.faults.loop_thread import LoopThread
from pytest_integration_kit.mocks.router import describe_request, describe_routes

if TYPE_CHECKING:
    import ssl
    from pathlib import Path

    from pytest_integration_kit.mocks.certificate import ThrowawayCertificate

__all__ = ["MockServer"]

MAX_HEAD = 64 * 1024
#: Hop-by-hop or framing headers the server writes itself.
OWN_HEADERS = frozenset({"content-length", "transfer-encoding", "connection", "keep-alive"})


class BadRequest(Exception):
    """The bytes on the socket are not an HTTP/1.x request we can serve."""


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
            self._serve, self.host, self._requested_port, ssl=context, limit=MAX_HEAD
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
        try:
            keep_alive = True
            while keep_alive:
                try:
                    request, keep_alive = await self._read_request(reader, writer)
                except (asyncio.IncompleteReadError, ConnectionError):
                    break
                except (BadRequest, asyncio.LimitOverrunError, ValueError) as exc:
                    body = f"bad request: {exc}\n".encode()
                    writer.write(_head(400, {"content-type": "text/plain"}, len(body), False))
                    writer.write(body)
                    await writer.drain()
                    break
                plan = await self._resolve(request)
                keep_alive = await self._carry_out(plan, request, reader, writer, keep_alive)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._connections.discard(writer)
            if not writer.transport.is_closing():
                writer.close()

    async def _read_request(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> tuple[httpx.Request, bool]:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        try:
            method, target, version = lines[0].split(" ")
        except ValueError:
            raise BadRequest(f"request line {lines[0]!r}") from None
        if not version.startswith("HTTP/1."):
            raise BadRequest(f"version {version!r}")
        headers: list[tuple[str, str]] = []
        for line in lines[1:]:
            if not line:
                continue
            name, sep, value = line.partition(":")
            if not sep:
                raise BadRequest(f"header line {line!r}")
            headers.append((name.strip(), value.strip()))
        fields = {name.lower(): value for name, value in headers}
        connection = fields.get("connection", "").lower()
        keep_alive = (
            "close" not in connection if version == "HTTP/1.1" else "keep-alive" in connection
        )
        if fields.get("expect", "").lower() == "100-continue":
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        if "chunked" in fields.get("transfer-encoding", "").lower():
            body = await _read_chunked(reader)
            headers = [(n, v) for n, v in headers if n.lower() != "transfer-encoding"]
            headers.append(("Content-Length", str(len(body))))
        else:
            body = await reader.readexactly(int(fields.get("content-length", "0")))
        if target.startswith(("http://", "https://")):
            target = "/" + target.split("/", 3)[3] if target.count("/") >= 3 else "/"
        request = httpx.Request(method, self.url + target, headers=headers, content=body)
        return request, keep_alive

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
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        keep_alive: bool,
    ) -> bool:
        """Do the plan to the connection; return whether the connection stays open."""
        if plan.delay:
            await asyncio.sleep(plan.delay)
        if plan.action == "timeout":
            while await reader.read(65536):  # hold the connection until the client leaves
                pass
            return False
        if plan.action == "reset":
            _reset(writer)
            return False
        body = await _raw_body(plan.response)
        with_body = request.method != "HEAD"
        head = _head(plan.response.status_code, plan.response.headers, len(body), keep_alive)
        if plan.action == "truncate":
            writer.write(head + body[: plan.truncate_at])
            await writer.drain()
            writer.close()
            return False
        if plan.action == "dribble" and with_body:
            writer.write(head)
            for start in range(0, len(body), plan.chunk_size):
                if start:
                    await asyncio.sleep(plan.interval)
                writer.write(body[start : start + plan.chunk_size])
                await writer.drain()
            return keep_alive
        writer.write(head + body if with_body else head)
        await writer.drain()
        return keep_alive


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    while True:
        size_line = await reader.readuntil(b"\r\n")
        size = int(size_line.split(b";", 1)[0].strip(), 16)
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                pass
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)


async def _raw_body(response: httpx.Response) -> bytes:
    """The body as it goes on the wire (not content-decoded)."""
    stream = response.stream
    if isinstance(stream, httpx.SyncByteStream):
        return b"".join(stream)
    return b"".join([chunk async for chunk in stream])


def _head(status: int, headers: Any, length: int, keep_alive: bool) -> bytes:
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = ""
    lines = [f"HTTP/1.1 {status} {reason}"]
    items = headers.multi_items() if isinstance(headers, httpx.Headers) else headers.items()
    lines += [f"{name}: {value}" for name, value in items if name.lower() not in OWN_HEADERS]
    lines.append(f"Content-Length: {length}")
    lines.append("Connection: keep-alive" if keep_alive else "Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with SO_LINGER 0, so the peer gets a TCP RST: "connection reset by peer"."""
    raw = writer.get_extra_info("socket")
    if raw is not None:
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
