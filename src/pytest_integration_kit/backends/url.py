"""The url backend: a server someone else runs (CI service containers, a dev box)."""

from __future__ import annotations

import dataclasses
import time
from typing import TYPE_CHECKING

from pytest_integration_kit.backends.base import Backend, RunningServer, ServerOptions
from pytest_integration_kit.errors import BackendUnavailable
from pytest_integration_kit.services.readiness import login_refused, wait_until_ready
from pytest_integration_kit.services.spec import ServerContext

if TYPE_CHECKING:
    from pytest_integration_kit.services.endpoint import Endpoint

__all__ = ["UrlBackend", "UrlServer"]


class UrlServer(RunningServer):
    def __init__(self, endpoint: Endpoint, seconds_to_ready: float) -> None:
        self.endpoint = endpoint
        self.seconds_to_ready = seconds_to_ready

    def stop(self) -> None:
        """Nothing to stop: the server is not ours."""

    def log_tail(self, lines: int = 40) -> str:
        return "(the url backend has no server log: the server is run elsewhere)"


class UrlBackend(Backend):
    name = "url"

    def unavailable_reason(self, options: ServerOptions) -> str | None:
        if options.url:
            return None
        service = options.spec.name
        return (
            f"the url backend needs the URL of a {options.spec.title} server: set "
            f"integration_{service}_url (ini), INTEGRATION_{service.upper()}_URL (env) or "
            f"--integration-{service}-url"
        )

    def start(self, options: ServerOptions) -> RunningServer:
        reason = self.unavailable_reason(options)
        if reason is not None or options.url is None:
            raise BackendUnavailable(reason)
        started = time.monotonic()
        endpoint = options.spec.endpoint_from_url(options.url)
        version = wait_until_ready(
            lambda seconds: options.spec.ready(endpoint, seconds, ServerContext()),
            what=f"{options.spec.title} at {endpoint.safe_url}",
            timeout=options.startup_timeout,
            log_tail=lambda: "(no log: the url backend's server is run elsewhere)",
            final=login_refused,  # someone else's server: its users will not change
        )
        endpoint = dataclasses.replace(endpoint, version=version)
        return UrlServer(endpoint, time.monotonic() - started)
