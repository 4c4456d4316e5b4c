"""The app clients without a database: ASGI lifespan and state, cookie logins and their
cache, a bare WSGI callable, and what a user sees when the setup is wrong."""

from __future__ import annotations

import re
import textwrap

import pytest

ASGI = """
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

EVENTS = []


@asynccontextmanager
async def lifespan(app):
    EVENTS.append("startup")
    yield {"answer": 42}
    EVENTS.append("shutdown")


async def login(request):
    response = JSONResponse({})
    response.set_cookie("user", request.query_params["name"])
    return response


async def whoami(request):
    return JSONResponse({"user": request.cookies.get("user"), "answer": request.state.answer})


app = Starlette(lifespan=lifespan, routes=[
    Route("/login", login, methods=["POST"]), Route("/whoami", whoami),
])
"""

WSGI = """
def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [environ["PATH_INFO"].encode()]
"""

AUTH = """
CALLS = []


def login(client, user):
    CALLS.append(user)
    client.post("/login", params={"name": user})  # the cookie stays on the client


def bad_login(client, user):
    return 42
"""

INI = """
[pytest]
integration_app = {app}
integration_login = auth:login
integration_openapi = false
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
filterwarnings =
    error
"""


def write(pytester: pytest.Pytester, app: str = "asgi_app:app", **ini: str) -> None:
    pytester.makepyfile(asgi_app=ASGI, wsgi_app=WSGI, auth=AUTH)
    text = textwrap.dedent(INI).format(app=app)
    for key, value in ini.items():
        text = re.sub(rf"(?m)^integration_{key} = .*$", f"integration_{key} = {value}", text)
    pytester.makefile(".ini", pytest=text)


ASGI_TESTS = """
import pytest
import requests

import asgi_app
import auth


@pytest.mark.parametrize("n", range(3))
def test_cookie_login_cached(n, app_client):
    assert app_client.as_user("ada").get("/whoami").json() == {"user": "ada", "answer": 42}
    assert app_client.get("/whoami").json()["user"] is None  # the plain client: no cookie
    assert auth.CALLS == ["ada"]  # one login for three tests


def test_uncached_login(app_client):
    app_client.as_user("grace", cache=False)
    app_client.as_user("grace", cache=False)
    assert auth.CALLS.count("grace") == 2


async def test_async_client_same_loop_as_lifespan(app_async_client):
    ada = await app_async_client.as_user("ada")
    assert (await ada.get("/whoami")).json() == {"user": "ada", "answer": 42}


def test_live_server(live_server, app_client):
    cookies = dict(app_client.as_user("ada").cookies)
    assert requests.get(f"{live_server.url}/whoami", cookies=cookies).json()["user"] == "ada"


def test_lifespan_ran_once(app_client):
    assert asgi_app.EVENTS == ["startup"]
"""


def test_asgi_lifespan_cookies_and_cache(pytester: pytest.Pytester) -> None:
    write(pytester)
    pytester.makepyfile(test_asgi=ASGI_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:randomly")
    result.assert_outcomes(passed=7)


def test_bare_wsgi_callable(pytester: pytest.Pytester) -> None:
    write(pytester, app="wsgi_app:app")
    pytester.makepyfile(
        test_wsgi="""
        import urllib.request

        def test_in_process(app_client):
            assert app_client.get("/hello").text == "/hello"

        async def test_async(app_async_client):
            assert (await app_async_client.get("/async")).text == "/async"

        def test_live(live_server):
            with urllib.request.urlopen(live_server.url + "/live", timeout=10) as response:
                assert response.read() == b"/live"
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:randomly")
    result.assert_outcomes(passed=3)


@pytest.mark.parametrize(
    ("app", "login", "message"),
    [
        pytest.param(
            "", "auth:login", "*need integration_app = module:attr naming your ASGI*", id="unset"
        ),
        pytest.param(
            "auth:CALLS",
            "auth:login",
            "*integration_app = auth:CALLS is a list, not an ASGI or WSGI*",
            id="not-app",
        ),
        pytest.param(
            "asgi_app:nope", "auth:login", "*integration_app: *has no attribute 'nope'*", id="attr"
        ),
        pytest.param(
            "asgi_app:app",
            "auth:bad_login",
            "*integration_login: bad_login returned a int; expected a mapping of headers*",
            id="bad-login",
        ),
    ],
)
def test_setup_errors_name_the_setting(
    pytester: pytest.Pytester, app: str, login: str, message: str
) -> None:
    write(pytester, app=app or "asgi_app:app")
    ini = pytester.path / "pytest.ini"
    text = ini.read_text().replace("integration_login = auth:login", f"integration_login = {login}")
    if not app:
        text = text.replace("integration_app = asgi_app:app\n", "")
    ini.write_text(text)
    pytester.makepyfile(
        test_x="""
        def test_x(app_client):
            app_client.as_user("ada")
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:randomly")
    in_test = "login" in message  # as_user() fails in the test; the rest at setup
    result.assert_outcomes(errors=0 if in_test else 1, failed=1 if in_test else 0)
    result.stdout.fnmatch_lines([message])
    assert "INTERNALERROR" not in result.stdout.str()
    assert "During handling" not in result.stdout.str()  # one message, not a chain


def test_failing_startup_is_reported(pytester: pytest.Pytester) -> None:
    write(pytester, app="broken:app")
    pytester.makepyfile(
        broken="""
        from contextlib import asynccontextmanager
        from starlette.applications import Starlette

        @asynccontextmanager
        async def lifespan(app):
            raise RuntimeError("no cache server")
            yield

        app = Starlette(lifespan=lifespan)
        """,
        test_x="""
        def test_x(app_client):
            pass
        """,
    )
    result = pytester.runpytest_subprocess("-p", "no:randomly")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["*integration_app: the application?s lifespan startup failed: RuntimeError: no cache*"]
    )


#: An OpenAPI 3.0 document kept next to the code: `user` may be null, `answer` drifted.
OPENAPI_YAML = """
openapi: 3.0.3
info: {title: whoami, version: "1"}
paths:
  /whoami:
    get:
      responses:
        "200":
          description: who is asking
          content:
            application/json:
              schema: {$ref: "#/components/schemas/Who"}
components:
  schemas:
    Who:
      type: object
      required: [user, answer]
      properties:
        user: {type: string, nullable: true}
        answer: {type: string}
"""


def test_openapi_document_from_a_yaml_file(pytester: pytest.Pytester) -> None:
    write(pytester, openapi="docs/openapi.yaml")
    pytester.mkdir("docs").joinpath("openapi.yaml").write_text(OPENAPI_YAML)
    pytester.makepyfile(
        test_x="""
        def test_anonymous(app_client):
            app_client.get("/whoami")

        def test_undocumented_path_is_not_checked(app_client):
            app_client.post("/login", params={"name": "ada"})
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:randomly")
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(
        [
            "*ResponseMismatch: response does not match the OpenAPI document: GET /whoami → 200",
            "*answer: 42 is not of type 'string'",
        ]
    )
    assert "user:" not in result.stdout.str()  # null is allowed: nullable: true
