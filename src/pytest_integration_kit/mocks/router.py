"""A strict respx router: unmatched requests say which routes exist, unused routes are reported."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx
import respx
from respx.models import AllMockedAssertionError

from pytest_integration_kit.faults.http import IN_ASYNC_CLIENT

if TYPE_CHECKING:
    from collections.abc import Iterable

    from respx.models import ResolvedRoute

__all__ = ["HttpMock", "describe_request", "describe_routes"]


def describe_request(request: httpx.Request) -> str:
    return f"{request.method} {request.url}"


def describe_routes(routes: Iterable[respx.Route]) -> str:
    """One line per route: its name (if any), pattern and how often it was called."""
    lines = []
    for route in routes:
        name = f"{route.name}: " if route.name else ""
        lines.append(f"  - {name}{route.pattern!r} (called {route.call_count}x)")
    return "\n".join(lines) if lines else "  (no routes registered)"


class HttpMock(respx.MockRouter):
    """A ``respx.MockRouter`` that explains misses and remembers them for the end of the test.

    An unmatched request raises ``AssertionError`` naming the request and every registered
    route; it is also kept in :attr:`unmatched`, so a test whose code swallowed the error
    still fails (see :meth:`problems`). Faults from :mod:`pytest_integration_kit.faults`
    used as side effects learn here whether the client is sync or async.
    """

    def __init__(
        self,
        *,
        assert_all_called: bool = True,
        assert_all_mocked: bool = True,
        base_url: str | None = None,
        using: str = "httpx",
    ) -> None:
        super().__init__(
            assert_all_called=assert_all_called,
            assert_all_mocked=assert_all_mocked,
            base_url=base_url,
            using=using,
        )
        self.unmatched: list[httpx.Request] = []

    def _explain_miss(self, request: httpx.Request) -> AllMockedAssertionError:
        self.unmatched.append(request)
        return AllMockedAssertionError(
            f"http_mock: no route matches {describe_request(request)}\n"
            f"registered routes:\n{describe_routes(self.routes)}"
        )

    def resolve(self, request: httpx.Request) -> ResolvedRoute:
        token = IN_ASYNC_CLIENT.set(False)
        try:
            return super().resolve(request)
        except AllMockedAssertionError:
            raise self._explain_miss(request) from None
        finally:
            IN_ASYNC_CLIENT.reset(token)

    async def aresolve(self, request: httpx.Request) -> ResolvedRoute:
        token = IN_ASYNC_CLIENT.set(True)
        try:
            return await super().aresolve(request)
        except AllMockedAssertionError:
            raise self._explain_miss(request) from None
        finally:
            IN_ASYNC_CLIENT.reset(token)

    def pass_through_to(self, base_url: str) -> respx.Route:
        """Let requests to ``base_url`` (a ``mock_server``, say) reach the real socket."""
        url = httpx.URL(base_url)
        address: dict[str, Any] = {"scheme": url.scheme, "host": url.host}
        if url.port is not None:  # none given: the scheme's default, as respx matches it
            address["port"] = url.port
        return self.route(**address, name=f"pass-through to {base_url}").pass_through()

    def uncalled(self) -> list[respx.Route]:
        """Routes never called; pass-through routes do not count."""
        return [route for route in self.routes if not route.called and not route.is_pass_through]

    def problems(self, *, check_uncalled: bool | None = None) -> list[str]:
        """What is wrong at the end of a test: requests no route matched, routes never called."""
        found: list[str] = []
        if self.unmatched:
            found.append(
                "requests no route matched:\n"
                + "\n".join(f"  - {describe_request(r)}" for r in self.unmatched)
                + f"\nregistered routes:\n{describe_routes(self.routes)}"
            )
        check = self._assert_all_called if check_uncalled is None else check_uncalled
        uncalled = self.uncalled()
        if check and uncalled:
            found.append(
                "routes never called (opt out with "
                "@pytest.mark.http_mock(assert_all_called=False)):\n" + describe_routes(uncalled)
            )
        return found

    def __enter__(self) -> HttpMock:
        self.start()
        return self

    def __exit__(self, *args: Any) -> None:
        # Reporting is the caller's job (problems()); respx would raise on uncalled routes.
        self.stop(quiet=True)
