"""``http_mock`` and ``mock_server`` as users meet them: a project run through pytester."""

from __future__ import annotations

import pytest

INI = """
[pytest]
addopts = -p no:randomly -p no:cacheprovider
asyncio_default_fixture_loop_scope = function
"""


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    """A user project with the kit's ini."""
    pytester.makeini(INI)
    return pytester


def test_http_mock_serves_sync_and_async_httpx(project: pytest.Pytester) -> None:
    project.makepyfile(
        """
        import httpx, pytest
        from pytest_integration_kit.faults.http import Status

        def test_sync(http_mock):
            route = http_mock.get("https://api.test/users/7").respond(200, json={"id": 7})
            assert httpx.get("https://api.test/users/7").json() == {"id": 7}
            assert route.called

        @pytest.mark.asyncio
        async def test_async(http_mock):
            http_mock.post("https://api.test/orders").mock(side_effect=Status(429))
            async with httpx.AsyncClient() as client:
                assert (await client.post("https://api.test/orders")).status_code == 429
        """
    )
    result = project.runpytest()
    result.assert_outcomes(passed=2)


def test_http_mock_unmatched_request_fails_listing_routes(project: pytest.Pytester) -> None:
    project.makepyfile(
        """
        import httpx

        def test_miss(http_mock):
            http_mock.get("https://api.test/users/7", name="user").respond(200)
            httpx.get("https://api.test/users/7")
            try:
                httpx.get("https://api.test/users/8")  # code under test swallows errors
            except Exception:
                pass
        """
    )
    result = project.runpytest()
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*requests no route matched:*",
            "*GET https://api.test/users/8*",
            "*registered routes:*",
            "*user: *called 1x*",
        ]
    )


def test_http_mock_uncalled_route_fails_unless_marked(project: pytest.Pytester) -> None:
    project.makepyfile(
        """
        import pytest

        def test_unused(http_mock):
            http_mock.get("https://api.test/never", name="never").respond(200)

        @pytest.mark.http_mock(assert_all_called=False)
        def test_unused_allowed(http_mock):
            http_mock.get("https://api.test/never").respond(200)
        """
    )
    result = project.runpytest()
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*routes never called*", "*never: *called 0x*"])
    assert "test_unused_allowed" not in "\n".join(
        line for line in result.outlines if line.startswith("ERROR")
    )


def test_mock_server_serves_requests_and_resets_between_tests(project: pytest.Pytester) -> None:
    project.makepyfile(
        """
        import urllib.request
        import requests

        SEEN = []

        def test_first(mock_server):
            mock_server.get("/v1/users/7").respond(200, json={"id": 7})
            assert requests.get(mock_server.url + "/v1/users/7", timeout=5).json() == {"id": 7}
            SEEN.append(mock_server.url)

        def test_second(mock_server):
            assert len(mock_server.routes) == 0 and len(mock_server.calls) == 0
            assert mock_server.url == SEEN[0]  # one server for the session
            mock_server.get("/ping").respond(200, text="pong")
            assert urllib.request.urlopen(mock_server.url + "/ping").read() == b"pong"
        """
    )
    result = project.runpytest()
    result.assert_outcomes(passed=2)


def test_mock_server_unmatched_request_fails_the_test(project: pytest.Pytester) -> None:
    project.makepyfile(
        """
        import requests

        def test_miss(mock_server):
            mock_server.get("/v1/users/7").respond(200)
            assert requests.get(mock_server.url + "/v1/users/7", timeout=5).ok
            answer = requests.get(mock_server.url + "/v1/users/8", timeout=5)
            assert answer.status_code == 500
            assert "no route matches GET" in answer.text
        """
    )
    result = project.runpytest()
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*requests no route matched (answered 500)*", "*/v1/users/8*"])


def test_mock_server_factory_gives_an_https_server(project: pytest.Pytester) -> None:
    project.makeconftest(
        """
        from pytest_integration_kit.fixtures.mocks import mock_server_factory

        tls_server = mock_server_factory(https=True)
        """
    )
    project.makepyfile(
        """
        import httpx

        def test_tls(tls_server):
            tls_server.get("/x").respond(200, text="secret")
            assert tls_server.url.startswith("https://")
            client_context = tls_server.client_ssl_context()
            assert httpx.get(tls_server.url + "/x", verify=client_context).text == "secret"
        """
    )
    # In a subprocess: cryptography's native module does not survive pytester's
    # in-process sys.modules snapshot and restore.
    result = project.runpytest_subprocess()
    result.assert_outcomes(passed=1)


def test_http_mock_and_mock_server_in_one_test(project: pytest.Pytester) -> None:
    project.makepyfile(
        """
        import httpx

        def test_both(http_mock, mock_server):
            http_mock.get("https://api.test/token").respond(200, json={"token": "t"})
            mock_server.get("/v1/users/7").respond(200, json={"id": 7})
            assert httpx.get("https://api.test/token").json() == {"token": "t"}
            # the mock server's socket is reached for real, not intercepted by respx
            assert httpx.get(mock_server.url + "/v1/users/7").json() == {"id": 7}
            assert mock_server.calls.call_count == 1
        """
    )
    project.runpytest().assert_outcomes(passed=1)


def test_marker_lets_misses_through_for_both_fixtures(project: pytest.Pytester) -> None:
    project.makepyfile(
        """
        import httpx
        import pytest
        import requests

        @pytest.mark.http_mock(assert_all_mocked=False)
        def test_lenient(http_mock, mock_server):
            assert httpx.get("https://api.test/anything").status_code == 200
            assert requests.get(mock_server.url + "/anything", timeout=5).status_code == 200

        def test_strict_again(mock_server):
            assert requests.get(mock_server.url + "/anything", timeout=5).status_code == 500
        """
    )
    result = project.runpytest()
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*ERROR at teardown of test_strict_again*"])


def test_http_mock_miss_that_fails_the_test_is_reported_once(project: pytest.Pytester) -> None:
    project.makepyfile(
        """
        import httpx

        def test_miss(http_mock):
            http_mock.get("https://api.test/users/7", name="user").respond(200)
            httpx.get("https://api.test/users/8")
        """
    )
    result = project.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*AssertionError: http_mock: no route matches GET https://api.test/users/8*"]
    )
    result.stdout.no_fnmatch_line("*ERROR at teardown*")


def test_marker_asks_for_https(project: pytest.Pytester) -> None:
    project.makepyfile(
        """
        import httpx
        import pytest

        @pytest.mark.http_mock(https=True)
        def test_tls(http_mock, mock_server):
            mock_server.get("/x").respond(200, text="secret")
            assert mock_server.url.startswith("https://127.0.0.1:")
            context = mock_server.client_ssl_context()
            assert httpx.get(mock_server.url + "/x", verify=context).text == "secret"

        def test_plain(mock_server):
            assert mock_server.url.startswith("http://127.0.0.1:")
        """
    )
    project.runpytest_subprocess().assert_outcomes(passed=2)
