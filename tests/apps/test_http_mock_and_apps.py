"""``http_mock`` beside the app clients: it mocks the services the application calls,
while requests into the application itself (httpx's ASGI transport, which respx
patches too, and ``live_server``'s socket) reach it."""

from __future__ import annotations

import pytest

APP = """
import httpx
from fastapi import FastAPI

app = FastAPI()


@app.get("/rate")
async def rate():
    async with httpx.AsyncClient() as client:
        answer = await client.get("https://rates.example.test/eur")
    return {"rate": answer.json()["rate"]}
"""

TESTS = """
import httpx
import pytest


def test_sync_client(app_client, http_mock):
    http_mock.get("https://rates.example.test/eur").respond(200, json={"rate": 1.1})
    assert app_client.get("/rate").json() == {"rate": 1.1}


@pytest.mark.asyncio
async def test_async_client(app_async_client, http_mock):
    http_mock.get("https://rates.example.test/eur").respond(200, json={"rate": 1.2})
    assert (await app_async_client.get("/rate")).json() == {"rate": 1.2}


def test_live_server(live_server, http_mock):
    http_mock.get("https://rates.example.test/eur").respond(200, json={"rate": 1.3})
    assert httpx.get(live_server.url + "/rate").json() == {"rate": 1.3}


def test_the_mock_is_still_strict(app_client, http_mock):
    http_mock.get("https://rates.example.test/usd").respond(200, json={"rate": 1.0})
"""


def test_requests_into_the_app_pass_http_mock(pytester: pytest.Pytester) -> None:
    pytester.makeini(
        """
        [pytest]
        addopts = -p no:randomly -p no:cacheprovider
        asyncio_default_fixture_loop_scope = function
        integration_app = rates:app
        """
    )
    pytester.makepyfile(rates=APP, test_rates=TESTS)
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(passed=4, errors=1)
    result.stdout.fnmatch_lines(["*ERROR at teardown of test_the_mock_is_still_strict*"])
