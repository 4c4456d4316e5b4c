"""The test's connection handed to each request of the application, one at a time.

``integration_app_session`` answers a FastAPI session dependency with a session joined
to the test session's connection (``create_savepoint``: its commits release
savepoints, the test's rollback undoes them). Every request of a test shares that one
connection, so they take turns. Without turns they overlapped behind a live server:
FastAPI sends a response before it closes the yield dependency's session, so the
client's next request began on the connection while the last one's session was still
rolling back its savepoint — ``savepoint "sa_savepoint_62" does not exist`` errors, and
requests that never answered. The live server now holds each response's status until
the application's call has returned (:mod:`.finished_responses`); the turns remain for
requests a client sends at once.

Nothing here imports pytest.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from pytest_integration_kit.errors import IntegrationKitError
from pytest_integration_kit.isolation.binding import TURN_TIMEOUT

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["JoinedSessions"]


class JoinedSessions:
    """Sessions on ``test_session``'s connection, for one request at a time.

    :meth:`dependency` is the FastAPI dependency override: a generator, so FastAPI
    closes each session after its request (after the response, on a live server).
    """

    def __init__(
        self, test_session: Any, session_class: type[Any], *, timeout: float = TURN_TIMEOUT
    ) -> None:
        self.test_session = test_session
        self.session_class = session_class
        self.timeout = timeout
        # Released by whichever thread closes the session: FastAPI opens and closes a
        # sync dependency in worker threads that may differ.
        self._turn = threading.Lock()

    def dependency(self) -> Iterator[Any]:
        """A session joined to the test's connection, once no other request holds one."""
        if not self._turn.acquire(timeout=self.timeout):
            raise IntegrationKitError(
                f"integration_app_session: this request waited {self.timeout:g} s for "
                "the session of another request of the same test to close. A test's "
                "requests share its connection one at a time, so a request that waits "
                "for another one (calling the live server from inside a request) never "
                "gets its turn"
            )
        try:
            with self.session_class(
                bind=self.test_session.connection(), join_transaction_mode="create_savepoint"
            ) as joined:
                yield joined
        finally:
            self._turn.release()
