"""One vocabulary, every client: each fault looks the same in-process and over the socket,
to httpx (sync and async), requests and urllib, once their exceptions are named alike."""

from __future__ import annotations

import asyncio
import http.client
import urllib.error
import urllib.request
from typing import TYPE_CHECKING

import httpx
import pytest
import requests

from pytest_integration_kit.faults.http import (
    ConnectionReset,
    Delay,
    HttpFault,
    Malformed,
    RateLimit,
    Series,
    SlowBody,
    Status,
    Timeout,
    Truncated,
)
from pytest_integration_kit.mocks import HttpMock, MockServer

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

TIMEOUT = 0.3
BODY = b'{"id": 7, "name": "seven"}'

Outcome = tuple[str, int, bytes] | tuple[str]


def with_httpx(url: str) -> Outcome:
    try:
        answer = httpx.get(url, timeout=TIMEOUT)
    except httpx.TimeoutException:
        return ("timeout",)
    except httpx.ReadError:
        return ("reset",)
    except httpx.RemoteProtocolError:
        return ("truncated",)
    return ("answer", answer.status_code, answer.content)


def with_async_httpx(url: str) -> Outcome:
    async def fetch() -> Outcome:
        async with httpx.AsyncClient(timeout=TIMEOUT) as client:
            try:
                answer = await client.get(url)
            except httpx.TimeoutException:
                return ("timeout",)
            except httpx.ReadError:
                return ("reset",)
            except httpx.RemoteProtocolError:
                return ("truncated",)
            return ("answer", answer.status_code, answer.content)

    return asyncio.run(fetch())


def with_requests(url: str) -> Outcome:
    try:
        answer = requests.get(url, timeout=TIMEOUT)
    except requests.exceptions.Timeout:
        return ("timeout",)
    except requests.exceptions.ChunkedEncodingError:
        return ("truncated",)
    except requests.exceptions.ConnectionError as exc:
        return ("timeout",) if "timed out" in str(exc) else ("reset",)
    return ("answer", answer.status_code, answer.content)


def with_urllib(url: str) -> Outcome:
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as answer:  # noqa: S310 - our server
            return ("answer", answer.status, answer.read())
    except urllib.error.HTTPError as error:
        with error:
            return ("answer", error.code, error.read())
    except TimeoutError:
        return ("timeout",)
    except ConnectionResetError:
        return ("reset",)
    except http.client.IncompleteRead:
        return ("truncated",)


CLIENTS: dict[str, Callable[[str], Outcome]] = {
    "httpx": with_httpx,
    "httpx-async": with_async_httpx,
    "requests": with_requests,
    "urllib": with_urllib,
}

FAULTS: dict[str, tuple[Callable[[], HttpFault], Outcome]] = {
    "delay": (lambda: Delay(0.05), ("answer", 200, BODY)),
    "delay-past-timeout": (lambda: Delay(1.0), ("timeout",)),
    "timeout": (Timeout, ("timeout",)),
    "reset": (ConnectionReset, ("reset",)),
    "status": (lambda: Status(503, text="down"), ("answer", 503, b"down")),
    "rate-limited": (
        lambda: RateLimit(0, per=60),
        ("answer", 429, b'{"error":"rate limited","limit":0,"per_seconds":60}'),
    ),
    "malformed": (lambda: Malformed(b"{oops"), ("answer", 200, b"{oops")),
    "truncated": (Truncated, ("truncated",)),
    "slow-body": (lambda: SlowBody(0.01, chunk_size=8), ("answer", 200, BODY)),
    "slow-body-stalls": (lambda: SlowBody(1.0, chunk_size=8), ("timeout",)),
    "series": (lambda: Series(Status(502)), ("answer", 502, b"")),
}


@pytest.fixture(scope="module")
def server() -> Iterator[MockServer]:
    """One mock server for the module's fault matrix."""
    with MockServer() as running:
        yield running


@pytest.mark.parametrize("fault", list(FAULTS))
@pytest.mark.parametrize("client", list(CLIENTS))
def test_every_client_sees_the_fault(server: MockServer, fault: str, client: str) -> None:
    server.reset()
    make, expected = FAULTS[fault]
    server.get("/users/7").respond(
        200, content=BODY, headers={"Content-Type": "application/json"}
    ).side_effect = make()
    outcome = CLIENTS[client](server.url + "/users/7")
    assert outcome == expected
    assert server.routes[0].call_count == 1


@pytest.mark.parametrize("fault", list(FAULTS))
@pytest.mark.parametrize("client", ["httpx", "httpx-async"])
def test_in_process_matches_the_socket(fault: str, client: str) -> None:
    make, expected = FAULTS[fault]
    with HttpMock() as mock:
        mock.get("https://api.test/users/7").respond(
            200, content=BODY, headers={"Content-Type": "application/json"}
        ).side_effect = make()
        assert CLIENTS[client]("https://api.test/users/7") == expected
