"""A RabbitMQ vhost of this process's own, its queues purged after each test.

AMQP cannot make a vhost: the management API (HTTP, the endpoint's
``ports["management"]``) does. Each process (xdist worker) gets ``pik_<owner>``, with
full permissions for the endpoint's user, deleted at the end of the session. After each
test every queue in it is purged (queues, exchanges and bindings stay declared:
declaring them again is idempotent). Nothing here imports pytest.

The vhost's description is its owner's label with a lease (:mod:`.ownership`), renewed
while the process lives; making one first deletes the ``pik_`` vhosts whose owners are
gone (this host) or whose leases ran out (any host).
"""

from __future__ import annotations

import base64
import email.utils
import json
import threading
import time
import urllib.error
import urllib.request
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from pytest_integration_kit.isolation.errors import IsolationError
from pytest_integration_kit.isolation.naming import owner_token
from pytest_integration_kit.isolation.ownership import (
    DEFAULT_LEASE_SECONDS,
    LeaseClock,
    abandoned,
    parse_owner,
)

if TYPE_CHECKING:
    from pytest_integration_kit.services.endpoint import Endpoint

__all__ = ["Management", "RabbitVhost"]

#: Every vhost the kit makes starts with this.
VHOST_PREFIX = "pik_"


class Management:
    """A few calls of RabbitMQ's management API, as the endpoint's user."""

    def __init__(self, endpoint: Endpoint, *, timeout: float = 10.0) -> None:
        port = endpoint.ports.get("management")
        if port is None:
            raise IsolationError(
                f"the {endpoint.service} endpoint names no management port: "
                "per-worker vhosts need RabbitMQ's management API"
            )
        host = f"[{endpoint.host}]" if ":" in endpoint.host else endpoint.host
        self.base = f"http://{host}:{port}"
        self.timeout = timeout
        token = base64.b64encode(f"{endpoint.user}:{endpoint.password}".encode()).decode()
        self._headers = {"Authorization": f"Basic {token}", "Content-Type": "application/json"}

    def call(self, method: str, path: str, body: object = None) -> Any:
        """``method path`` → the decoded JSON answer (None for an empty one)."""
        raw, _ = self._request(method, path, body)
        return json.loads(raw) if raw.strip() else None

    def server_time(self) -> float:
        """The broker's clock (its answers' ``Date``), where vhost leases are measured."""
        _, date = self._request("GET", "/api/whoami", None)
        parsed = email.utils.parsedate_to_datetime(date) if date else None
        return parsed.timestamp() if parsed is not None else time.time()

    def _request(self, method: str, path: str, body: object) -> tuple[bytes, str]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(  # noqa: S310 - http only, built from the endpoint
            self.base + path, data=data, method=method, headers=self._headers
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:  # noqa: S310
                return answer.read(), str(answer.headers.get("Date") or "")
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:200]
            raise IsolationError(
                f"RabbitMQ management API: {method} {path} answered {exc.code}: {detail}"
            ) from None

    def get(self, path: str) -> Any:
        return self.call("GET", path)


class RabbitVhost:
    """This process's vhost on one RabbitMQ server."""

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        owner: str | None = None,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
    ) -> None:
        self.endpoint = endpoint
        self.owner = owner or owner_token()
        self.name = VHOST_PREFIX + self.owner
        #: The broker's clock, where the vhost's lease is measured.
        self.clock = LeaseClock(lease_seconds)
        self._api = Management(endpoint)
        self._lock = threading.Lock()
        self._created = False

    def _label(self) -> dict[str, object]:
        return {"tracing": False, "description": self.clock.label(self._api.server_time)}

    def reap_orphans(self) -> list[str]:
        """Delete the kit's vhosts whose owners are gone or whose leases ran out."""
        now = self.clock.now(self._api.server_time)
        reaped = []
        for vhost in self._api.get("/api/vhosts?columns=name,description") or []:
            name = str(vhost.get("name", ""))
            owner = parse_owner(str(vhost.get("description") or ""))
            if not name.startswith(VHOST_PREFIX) or name == self.name or owner is None:
                continue
            if abandoned(owner, now=now):
                try:
                    self._api.call("DELETE", f"/api/vhosts/{quote(name, safe='')}")
                except IsolationError as exc:
                    if " 404:" not in str(exc):  # another run reaped it first
                        raise
                reaped.append(name)
        return reaped

    def renew(self) -> None:
        """Push the vhost's lease ``lease_seconds`` ahead (its description)."""
        with self._lock:
            if self._created:
                self._api.call("PUT", f"/api/vhosts/{self._path}", self._label())

    @property
    def _path(self) -> str:
        return quote(self.name, safe="")

    def create(self) -> Endpoint:
        """Make the vhost (once), let the endpoint's user in; the endpoint on it."""
        with self._lock:
            if not self._created:
                self.reap_orphans()
                self._api.call("PUT", f"/api/vhosts/{self._path}", self._label())
                user = quote(self.endpoint.user, safe="")
                everything = {"configure": ".*", "write": ".*", "read": ".*"}
                self._api.call("PUT", f"/api/permissions/{self._path}/{user}", everything)
                self._created = True
        return self.endpoint.with_database(self.name)

    def queues(self) -> list[str]:
        """The names of the queues declared in the vhost."""
        found = self._api.get(f"/api/queues/{self._path}?columns=name")
        return [str(queue["name"]) for queue in found or []]

    def purge(self) -> int:
        """Drop every message of every queue in the vhost; returns how many queues."""
        names = self.queues()
        for queue in names:
            try:
                self._api.call(
                    "DELETE", f"/api/queues/{self._path}/{quote(queue, safe='')}/contents"
                )
            except IsolationError as exc:
                if " 404:" not in str(exc):  # an auto-delete queue went with its consumer
                    raise
        return len(names)

    def drop(self) -> None:
        """Delete the vhost and everything in it."""
        with self._lock:
            if self._created:
                try:
                    self._api.call("DELETE", f"/api/vhosts/{self._path}")
                except IsolationError as exc:
                    if " 404:" not in str(exc):
                        raise
                self._created = False
