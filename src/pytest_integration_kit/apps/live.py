"""The application served on a real socket on 127.0.0.1, for clients that are not httpx.

ASGI applications are served by uvicorn inside the :class:`~.app.AppHost`'s loop (the
one its lifespan ran in; uvicorn's own lifespan handling is off); WSGI applications by
the standard library's ``wsgiref`` in a thread per request. Either way the server runs
in this process, so the application's sessionmakers bound into a test's transaction and
its dependency overrides apply to live requests too. A response's end reaches the client
once the application is done with the request (:mod:`.finished_responses`), as with the
in-process clients.

Nothing here imports pytest.
"""

from __future__ import annotations

import asyncio
import socket
import socketserver
import threading
import time
from typing import TYPE_CHECKING, Any, Final
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from pytest_integration_kit.apps.finished_responses import (
    asgi_ending_after_the_app,
    wsgi_ending_after_the_app,
)
from pytest_integration_kit.errors import IntegrationKitError

if TYPE_CHECKING:
    from pytest_integration_kit.apps.app import AppHost

__all__ = ["LiveServer"]

HOST: Final = "127.0.0.1"
#: Seconds the server may take to listen, and to stop.
START_TIMEOUT: Final = 30.0


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class _ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


class LiveServer:
    """The application on ``http://127.0.0.1:<port>``: ``.url``, ``.host``, ``.port``."""

    def __init__(self, host: AppHost) -> None:
        self.app_host = host
        self.host = HOST
        self.port = 0
        self._wsgi: WSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._uvicorn: Any = None
        self._serving: Any = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def __enter__(self) -> LiveServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        if self.app_host.kind == "wsgi":
            self._start_wsgi()
        else:
            self._start_asgi()

    def _start_wsgi(self) -> None:
        server = make_server(
            HOST,
            0,
            wsgi_ending_after_the_app(self.app_host.app),
            server_class=_ThreadingWSGIServer,
            handler_class=_QuietHandler,
        )
        self._wsgi = server
        self.port = server.server_address[1]
        self._thread = threading.Thread(
            target=server.serve_forever, name="integration-live-server", daemon=True
        )
        self._thread.start()

    def _start_asgi(self) -> None:
        try:
            import uvicorn  # noqa: PLC0415 - optional dependency, imported when used
        except ImportError:
            raise IntegrationKitError(
                "live_server serves an ASGI application with uvicorn, which is not "
                'installed: pip install uvicorn (or "pytest-integration-kit[apps]")'
            ) from None
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((HOST, 0))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            asgi_ending_after_the_app(self.app_host.asgi),
            interface="asgi3",
            lifespan="off",
            log_level="warning",
            access_log=False,
        )
        server = uvicorn.Server(config)
        self._uvicorn = server
        loop = self.app_host.loop
        if loop is None:
            sock.close()
            raise RuntimeError("the application host is not started")
        self._serving = asyncio.run_coroutine_threadsafe(server.serve(sockets=[sock]), loop)
        deadline = time.monotonic() + START_TIMEOUT
        while not server.started:
            if self._serving.done():
                self._serving.result()  # raises what stopped it
                raise IntegrationKitError("uvicorn stopped before it listened")
            if time.monotonic() > deadline:
                server.should_exit = True
                raise IntegrationKitError(
                    f"uvicorn did not listen on {self.url} within {START_TIMEOUT:.0f} s"
                )
            time.sleep(0.005)

    def stop(self) -> None:
        if self._wsgi is not None:
            self._wsgi.shutdown()
            self._wsgi.server_close()
            self._wsgi = None
        if self._thread is not None:
            self._thread.join(START_TIMEOUT)
            self._thread = None
        if self._uvicorn is not None:
            self._uvicorn.should_exit = True
            try:
                self._serving.result(START_TIMEOUT)
            finally:
                self._uvicorn = self._serving = None
