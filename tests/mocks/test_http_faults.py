"""Every HTTP fault seen by real clients: in-process through respx, and over a real socket.

Each test asserts what the client would see in production: the exception type, the
status, and for time-based faults the elapsed time within a tolerance.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import time
import urllib.error
import urllib.request
from typing import TYPE_CHECKING

import httpx
import pytest

from pytest_integration_kit.faults.http import (
    ConnectionReset,
    Delay,
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
    from collections.abc import Iterator

requests = pytest.importorskip("requests")

#: Scheduling on a shared 2-core box; generous, but far below the faults' own durations.
SLACK = 0.25
BODY = {"id": 7, "name": "seven", "tags": ["a", "b", "c"]}


@pytest.fixture(scope="module")
def running_server() -> Iterator[MockServer]:
    """One mock server for the module (reset per test by ``server``)."""
    with MockServer() as server:
        yield server


@pytest.fixture
def server(running_server: MockServer) -> MockServer:
    """The module's mock server, its routes and calls reset."""
    running_server.reset()
    return running_server


@pytest.fixture
def mock() -> Iterator[HttpMock]:
    """An in-process respx router for ``https://api.example.test``."""
    with HttpMock(base_url="https://api.example.test") as router:
        yield router


def timed(call: object) -> float:
    start = time.perf_counter()
    assert callable(call)
    call()
    return time.perf_counter() - start


# -- in-process: httpx sync and async ------------------------------------------------


def test_delay_in_process_sync(mock: HttpMock) -> None:
    mock.get("/users/7").respond(200, json=BODY).side_effect = Delay(0.2)
    start = time.perf_counter()
    response = httpx.get("https://api.example.test/users/7")
    assert 0.2 <= time.perf_counter() - start < 0.2 + SLACK
    assert response.json() == BODY


def test_delay_longer_than_read_timeout_is_a_read_timeout(mock: HttpMock) -> None:
    mock.get("/users/7").respond(200, json=BODY).side_effect = Delay(5)
    start = time.perf_counter()
    with pytest.raises(httpx.ReadTimeout):
        httpx.get("https://api.example.test/users/7", timeout=0.2)
    assert 0.2 <= time.perf_counter() - start < 0.2 + SLACK


@pytest.mark.asyncio
async def test_faults_in_process_async(mock: HttpMock) -> None:
    route = mock.get("/users/7").respond(200, json=BODY)
    async with httpx.AsyncClient(base_url="https://api.example.test", timeout=0.2) as client:
        route.side_effect = Delay(0.1)
        start = time.perf_counter()
        assert (await client.get("/users/7")).json() == BODY
        assert 0.1 <= time.perf_counter() - start < 0.1 + SLACK
        route.side_effect = Timeout()
        start = time.perf_counter()
        with pytest.raises(httpx.ReadTimeout):
            await client.get("/users/7")
        assert 0.2 <= time.perf_counter() - start < 0.2 + SLACK
        route.side_effect = ConnectionReset()
        with pytest.raises(httpx.ReadError, match="reset by peer"):
            await client.get("/users/7")
        route.side_effect = Truncated()
        with pytest.raises(httpx.RemoteProtocolError, match="complete message body"):
            await client.get("/users/7")
        route.side_effect = SlowBody(interval=0.02, chunk_size=8)
        start = time.perf_counter()
        assert (await client.get("/users/7")).json() == BODY
        chunks = -(-len(json.dumps(BODY, separators=(",", ":"))) // 8)
        assert time.perf_counter() - start >= 0.02 * (chunks - 1)
    # the event loop was never blocked by the faults' waits
    await asyncio.sleep(0)
    assert route.call_count == 5


def test_timeout_in_process_waits_for_the_clients_read_timeout(mock: HttpMock) -> None:
    mock.get("/users/7").mock(side_effect=Timeout())
    start = time.perf_counter()
    with pytest.raises(httpx.ReadTimeout):
        httpx.get("https://api.example.test/users/7", timeout=httpx.Timeout(5, read=0.3))
    assert 0.3 <= time.perf_counter() - start < 0.3 + SLACK


def test_reset_truncated_malformed_status_in_process(mock: HttpMock) -> None:
    route = mock.get("/users/7").respond(200, json=BODY)
    route.side_effect = ConnectionReset()
    with pytest.raises(httpx.ReadError, match="reset by peer"):
        httpx.get("https://api.example.test/users/7")
    route.side_effect = Truncated(after=5)
    with pytest.raises(httpx.RemoteProtocolError, match=r"received 5 bytes"):
        httpx.get("https://api.example.test/users/7")
    route.side_effect = Malformed()
    response = httpx.get("https://api.example.test/users/7")
    assert response.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        response.json()
    route.side_effect = Status(503, json={"error": "maintenance"})
    response = httpx.get("https://api.example.test/users/7")
    assert response.status_code == 503
    with pytest.raises(httpx.HTTPStatusError):
        response.raise_for_status()
    assert route.call_count == 4


def test_rate_limit_in_process_then_recovers(mock: HttpMock) -> None:
    now = [100.0]
    limit = RateLimit(3, per=10.0, clock=lambda: now[0])
    mock.get("/users/7").respond(200, json=BODY).side_effect = limit
    statuses = [httpx.get("https://api.example.test/users/7").status_code for _ in range(5)]
    assert statuses == [200, 200, 200, 429, 429]
    limited = httpx.get("https://api.example.test/users/7")
    assert limited.headers["Retry-After"] == "10"
    now[0] += 4.5
    assert httpx.get("https://api.example.test/users/7").headers["Retry-After"] == "6"
    now[0] += 6
    assert httpx.get("https://api.example.test/users/7").json() == BODY


def test_slow_body_in_process_stalls_into_a_read_timeout(mock: HttpMock) -> None:
    mock.get("/users/7").respond(200, json=BODY).side_effect = SlowBody(interval=1.0)
    with pytest.raises(httpx.ReadTimeout):
        httpx.get("https://api.example.test/users/7", timeout=0.1)


# -- over the socket: httpx, requests, urllib ----------------------------------------


def test_delay_over_socket_every_client(server: MockServer) -> None:
    server.get("/users/7").respond(200, json=BODY).side_effect = Delay(0.2)
    url = server.url + "/users/7"
    elapsed = timed(lambda: httpx.get(url).raise_for_status())
    assert 0.2 <= elapsed < 0.2 + SLACK
    elapsed = timed(lambda: requests.get(url, timeout=2).raise_for_status())
    assert 0.2 <= elapsed < 0.2 + SLACK
    with urllib.request.urlopen(url, timeout=2) as answer:  # noqa: S310 - our own server
        assert json.loads(answer.read()) == BODY


def test_timeout_over_socket_every_client(server: MockServer) -> None:
    server.get("/users/7").respond(200).side_effect = Timeout()
    url = server.url + "/users/7"
    start = time.perf_counter()
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(url, timeout=0.3)
    assert 0.3 <= time.perf_counter() - start < 0.3 + SLACK
    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.get(url, timeout=0.3)
    with pytest.raises(TimeoutError):
        urllib.request.urlopen(url, timeout=0.3)  # noqa: S310


@pytest.mark.asyncio
async def test_faults_over_socket_async_httpx(server: MockServer) -> None:
    route = server.get("/users/7").respond(200, json=BODY)
    async with httpx.AsyncClient(base_url=server.url, timeout=0.3) as client:
        route.side_effect = Timeout()
        with pytest.raises(httpx.ReadTimeout):
            await client.get("/users/7")
        route.side_effect = ConnectionReset()
        with pytest.raises(httpx.ReadError):
            await client.get("/users/7")
        route.side_effect = Truncated()
        with pytest.raises(httpx.RemoteProtocolError):
            await client.get("/users/7")
        route.side_effect = None
        assert (await client.get("/users/7")).json() == BODY


def test_connection_reset_over_socket_every_client(server: MockServer) -> None:
    server.get("/users/7").respond(200).side_effect = ConnectionReset()
    url = server.url + "/users/7"
    with pytest.raises(httpx.ReadError, match="reset by peer"):
        httpx.get(url)
    with pytest.raises(requests.exceptions.ConnectionError, match="reset by peer"):
        requests.get(url, timeout=2)
    with pytest.raises(ConnectionResetError):
        urllib.request.urlopen(url, timeout=2)  # noqa: S310


def test_truncated_over_socket_every_client(server: MockServer) -> None:
    server.get("/users/7").respond(200, json=BODY).side_effect = Truncated(after=10)
    url = server.url + "/users/7"
    with pytest.raises(httpx.RemoteProtocolError, match="received 10 bytes"):
        httpx.get(url)
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        requests.get(url, timeout=2)
    with (
        pytest.raises(http.client.IncompleteRead),
        urllib.request.urlopen(url, timeout=2) as answer,  # noqa: S310
    ):
        answer.read()


def test_status_and_malformed_over_socket(server: MockServer) -> None:
    route = server.get("/users/7").respond(200, json=BODY)
    route.side_effect = Status(503, text="down for maintenance", headers={"Retry-After": "30"})
    answer = requests.get(server.url + "/users/7", timeout=2)
    assert (answer.status_code, answer.text) == (503, "down for maintenance")
    assert answer.headers["Retry-After"] == "30"
    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(server.url + "/users/7", timeout=2)  # noqa: S310
    assert raised.value.code == 503
    raised.value.close()
    route.side_effect = Malformed()
    with pytest.raises(requests.exceptions.JSONDecodeError):
        requests.get(server.url + "/users/7", timeout=2).json()


def test_rate_limit_over_socket_requests(server: MockServer) -> None:
    server.get("/users/7").respond(200, json=BODY).side_effect = RateLimit(2, per=60)
    with requests.Session() as session:
        statuses = [session.get(server.url + "/users/7", timeout=2) for _ in range(3)]
    assert [s.status_code for s in statuses] == [200, 200, 429]
    assert 59 <= int(statuses[2].headers["Retry-After"]) <= 60


def test_slow_body_over_socket_dribbles(server: MockServer) -> None:
    server.get("/users/7").respond(200, json=BODY).side_effect = SlowBody(0.05, chunk_size=10)
    chunks = -(-len(json.dumps(BODY, separators=(",", ":"))) // 10)
    with httpx.stream("GET", server.url + "/users/7") as response:
        start = time.perf_counter()
        received = list(response.iter_raw())
        elapsed = time.perf_counter() - start
    assert json.loads(b"".join(received)) == BODY
    assert len(received) >= 2  # the client really saw the body arrive in pieces
    assert 0.05 * (chunks - 1) - 0.02 <= elapsed < 0.05 * (chunks - 1) + SLACK
    server.get("/slow").respond(200, text="x" * 10).side_effect = SlowBody(1.0)
    with pytest.raises(requests.exceptions.ConnectionError, match="timed out"):
        requests.get(server.url + "/slow", timeout=0.2)


def test_faults_in_a_sequence_model_a_recovering_service(server: MockServer) -> None:
    route = server.get("/users/7").respond(200, json=BODY)
    route.side_effect = Series(Status(503), ConnectionReset(), None)
    with requests.Session() as session:
        assert session.get(server.url + "/users/7", timeout=2).status_code == 503
        with pytest.raises(requests.exceptions.ConnectionError):
            session.get(server.url + "/users/7", timeout=2)
        assert session.get(server.url + "/users/7", timeout=2).json() == BODY
    assert route.call_count == 3


def test_series_in_process_ends_with_the_route_response(mock: HttpMock) -> None:
    route = mock.get("/users/7").respond(200, json=BODY)
    route.side_effect = Series(Status(429), httpx.Response(202, text="queued"))
    statuses = [httpx.get("https://api.example.test/users/7").status_code for _ in range(4)]
    assert statuses == [429, 202, 200, 200]
