"""The mock server as a library object: a real HTTP/1.1 socket server answering respx routes."""

from __future__ import annotations

import json
import shutil
import socket
import ssl
import subprocess
import sys
import urllib.request
from typing import TYPE_CHECKING

import httpx
import pytest

from pytest_integration_kit.mocks import MockServer

if TYPE_CHECKING:
    from collections.abc import Iterator


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


def raw_exchange(sock: socket.socket, request: bytes) -> bytes:
    """Send one request on an open socket; read one response by its Content-Length."""
    sock.sendall(request)
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


def test_url_is_loopback_with_a_random_port(server: MockServer) -> None:
    assert server.url == f"http://127.0.0.1:{server.port}"
    assert server.port > 0


def test_keep_alive_serves_many_requests_on_one_connection(server: MockServer) -> None:
    route = server.get("/v1/users/7").respond(200, json={"id": 7})
    with socket.create_connection((server.host, server.port)) as sock:
        for _ in range(3):
            answer = raw_exchange(sock, b"GET /v1/users/7 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
            assert b"Connection: keep-alive" in answer
            # httpx writes the JSON (compact since 0.24, with spaces before)
            assert json.loads(answer.partition(b"\r\n\r\n")[2]) == {"id": 7}
    assert route.call_count == 3


def test_connection_close_is_honoured(server: MockServer) -> None:
    server.get("/x").respond(204)
    with socket.create_connection((server.host, server.port)) as sock:
        sock.sendall(b"GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 204 No Content\r\n")
    assert b"Connection: close" in data


def read_until_closed(sock: socket.socket) -> bytes:
    sock.settimeout(5)
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def test_pipelined_requests_are_answered_in_order(server: MockServer) -> None:
    server.get("/a").respond(200, text="first")
    server.get("/b").respond(200, text="second")
    with socket.create_connection((server.host, server.port)) as sock:
        sock.sendall(
            b"GET /a HTTP/1.1\r\nHost: a\r\n\r\n"
            b"GET /b HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
        )
        data = read_until_closed(sock)
    first, second = data.split(b"HTTP/1.1 200 OK\r\n")[1:]
    assert first.endswith(b"first")
    assert second.endswith(b"second")
    assert b"Connection: close" in second


def test_expect_100_continue(server: MockServer) -> None:
    route = server.post("/upload").respond(201)
    with socket.create_connection((server.host, server.port), timeout=5) as sock:
        sock.sendall(
            b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
        )
        assert sock.recv(65536).startswith(b"HTTP/1.1 100 Continue\r\n")
        sock.sendall(b"hello")
        assert sock.recv(65536).startswith(b"HTTP/1.1 201 Created\r\n")
    assert route.calls.last.request.content == b"hello"


def test_http_1_0_gets_its_answer_and_the_connection_closed(server: MockServer) -> None:
    server.get("/old").respond(200, text="ok")
    with socket.create_connection((server.host, server.port)) as sock:
        sock.sendall(b"GET /old HTTP/1.0\r\n\r\n")
        data = read_until_closed(sock)
    assert data.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"Connection: close" in data
    assert data.endswith(b"\r\n\r\nok")


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"NONSENSE\r\n\r\n", b"400"),
        (b"GET /x HTTP/1.1\r\n\r\n", b"400"),  # HTTP/1.1 without Host
        (b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: nope\r\n\r\n", b"400"),
    ],
    ids=["garbage", "no-host", "bad-length"],
)
def test_a_bad_request_is_refused_and_closed(
    server: MockServer, request_bytes: bytes, status: bytes
) -> None:
    with socket.create_connection((server.host, server.port)) as sock:
        sock.sendall(request_bytes)
        data = read_until_closed(sock)
    assert data.startswith(b"HTTP/1.1 " + status + b" ")
    assert b"bad request: " in data
    assert len(server.calls) == 0


def test_an_endless_head_is_cut_off(server: MockServer) -> None:
    """A head past 64 KiB is refused (431, or a reset while the client still sends)."""
    data = b""
    with socket.create_connection((server.host, server.port)) as sock:
        try:
            sock.sendall(b"GET /x HTTP/1.1\r\nHost: a\r\nX-Big: " + b"a" * 1_000_000)
            data = read_until_closed(sock)
        except ConnectionError:
            pass
    assert data == b"" or data.startswith(b"HTTP/1.1 431 ")
    assert len(server.calls) == 0


def test_accepted_sockets_have_tcp_nodelay(server: MockServer) -> None:
    server.get("/x").respond(200)
    with httpx.Client() as client:
        client.get(server.url + "/x")
        writers = list(server._connections)
        assert writers
        for writer in writers:
            sock = writer.get_extra_info("socket")
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0


def test_side_effects_path_params_and_calls(server: MockServer) -> None:
    def echo(request: httpx.Request, user_id: str) -> httpx.Response:
        return httpx.Response(201, json={"user": int(user_id), "sent": json.loads(request.content)})

    route = server.post(path__regex=r"/v1/users/(?P<user_id>\d+)").mock(side_effect=echo)
    answer = httpx.post(server.url + "/v1/users/42", json={"name": "x"})
    assert answer.status_code == 201
    assert answer.json() == {"user": 42, "sent": {"name": "x"}}
    assert route.call_count == 1
    call = route.calls.last
    assert call.request.method == "POST"
    assert call.request.url.path == "/v1/users/42"
    assert call.response.status_code == 201


def test_a_sequence_of_side_effects(server: MockServer) -> None:
    server.get("/flaky").mock(side_effect=[httpx.Response(503), httpx.Response(200, text="ok")])
    assert httpx.get(server.url + "/flaky").status_code == 503
    assert httpx.get(server.url + "/flaky").text == "ok"


def test_chunked_request_body_from_requests(server: MockServer) -> None:
    requests = pytest.importorskip("requests")
    route = server.put("/upload").respond(200)
    answer = requests.put(server.url + "/upload", data=iter([b"ab", b"cd", b"ef"]), timeout=5)
    assert answer.status_code == 200
    assert route.calls.last.request.content == b"abcdef"


def test_head_has_no_body(server: MockServer) -> None:
    server.head("/x").respond(200, text="hello")
    answer = httpx.head(server.url + "/x")
    assert answer.headers["content-length"] == "5"
    assert answer.content == b""


def test_unmatched_request_gets_500_explaining_the_miss(server: MockServer) -> None:
    server.get("/v1/users/7", name="user").respond(200)
    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(server.url + "/v1/users/8", timeout=5)  # noqa: S310
    assert raised.value.code == 500
    body = raised.value.read().decode()
    raised.value.close()
    assert "no route matches GET" in body
    assert "/v1/users/8" in body
    assert "user: " in body
    problems = server.problems()
    assert any("requests no route matched" in p for p in problems)
    assert any("routes never called" in p for p in problems)


def test_a_crashing_side_effect_is_a_500_and_a_problem(server: MockServer) -> None:
    def broken(request: httpx.Request) -> httpx.Response:
        raise KeyError("oops")

    server.get("/x").mock(side_effect=broken)
    assert httpx.get(server.url + "/x").status_code == 500
    assert any("KeyError" in p for p in server.problems())


def test_reset_forgets_routes_and_calls(server: MockServer) -> None:
    server.get("/x").respond(200)
    httpx.get(server.url + "/x")
    server.reset()
    assert len(server.routes) == 0
    assert len(server.calls) == 0
    assert server.problems() == []


def test_a_program_in_a_subprocess_is_served(server: MockServer) -> None:
    server.get("/v1/ping").respond(200, text="pong")
    code = (
        "import sys, urllib.request;"
        "print(urllib.request.urlopen(sys.argv[1] + '/v1/ping').read().decode())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, server.url], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "pong"


@pytest.fixture(scope="module")
def tls_server() -> Iterator[MockServer]:
    """One HTTPS mock server for the module, its certificate from a throwaway CA."""
    with MockServer(https=True) as server:
        yield server


def test_https_with_a_throwaway_ca(tls_server: MockServer) -> None:
    tls_server.reset()
    assert tls_server.url.startswith("https://127.0.0.1:")
    assert tls_server.ca_path is not None
    tls_server.get("/secure").respond(200, json={"tls": True})
    verify = tls_server.client_ssl_context()
    assert httpx.get(tls_server.url + "/secure", verify=verify).json() == {"tls": True}
    localhost = f"https://localhost:{tls_server.port}/secure"
    assert httpx.get(localhost, verify=verify).json() == {"tls": True}
    context = ssl.create_default_context(cafile=str(tls_server.ca_path))
    with urllib.request.urlopen(tls_server.url + "/secure", context=context) as answer:  # noqa: S310
        assert json.loads(answer.read()) == {"tls": True}
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(tls_server.url + "/secure")


def test_https_with_requests(tls_server: MockServer) -> None:
    import requests  # noqa: PLC0415

    tls_server.reset()
    tls_server.get("/secure").respond(200, text="ok")
    answer = requests.get(tls_server.url + "/secure", verify=str(tls_server.ca_path), timeout=5)
    assert answer.text == "ok"


def test_https_under_strict_x509_verification(tls_server: MockServer) -> None:
    """Python 3.13 turns VERIFY_X509_STRICT on by default; the chain must pass it."""
    tls_server.reset()
    tls_server.get("/secure").respond(200, text="strict")
    context = tls_server.client_ssl_context()
    context.verify_flags |= ssl.VERIFY_X509_STRICT
    assert httpx.get(tls_server.url + "/secure", verify=context).text == "strict"


def test_the_served_certificate_is_an_end_entity_issued_by_the_ca(tls_server: MockServer) -> None:
    """What rustls (and webpki) insist on: the server's certificate is not a CA itself."""
    from cryptography import x509  # noqa: PLC0415 - trustme's own dependency
    from cryptography.x509.oid import ExtendedKeyUsageOID  # noqa: PLC0415

    assert tls_server.ca_path is not None
    context = tls_server.client_ssl_context()
    with (
        socket.create_connection((tls_server.host, tls_server.port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    served = x509.load_der_x509_certificate(der)
    authority = x509.load_pem_x509_certificate(tls_server.ca_path.read_bytes())
    assert served.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert authority.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    assert served.issuer == authority.subject != served.subject
    names = served.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {str(ip) for ip in names.get_values_for_type(x509.IPAddress)} == {"127.0.0.1", "::1"}
    assert names.get_values_for_type(x509.DNSName) == ["localhost"]
    usage = served.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in usage


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_https_with_curl(tls_server: MockServer) -> None:
    tls_server.reset()
    tls_server.get("/secure").respond(200, text="curl ok")
    out = subprocess.run(
        ["curl", "-sS", "--cacert", str(tls_server.ca_path), tls_server.url + "/secure"],
        capture_output=True, text=True, check=True, timeout=30,
    )  # fmt: skip
    assert out.stdout == "curl ok"
    refused = subprocess.run(
        ["curl", "-sS", tls_server.url + "/secure"],
        capture_output=True, text=True, check=False, timeout=30,
    )  # fmt: skip
    assert refused.returncode == 60  # curl: peer certificate cannot be authenticated


def test_the_certificate_files_go_with_the_server() -> None:
    with MockServer(https=True) as server:
        assert server.ca_path is not None
        directory = server.ca_path.parent
        assert directory.stat().st_mode & 0o077 == 0
        assert sorted(p.name for p in directory.iterdir()) == ["ca.pem", "server.key", "server.pem"]
    assert not directory.exists()


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_keep_alive_post_and_a_fault(server: MockServer) -> None:
    """A client in another language: curl reuses one connection for both URLs."""
    from pytest_integration_kit.faults.http import ConnectionReset  # noqa: PLC0415

    route = server.post("/v1/orders").respond(201, json={"ok": True})
    out = subprocess.run(
        [
            "curl", "-sS", "-v", "--json", '{"item": 1}',
            server.url + "/v1/orders", server.url + "/v1/orders",
        ],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    first, second = out.stdout.replace(" ", "").partition("}")[::2]
    assert json.loads(first + "}") == json.loads(second) == {"ok": True}
    assert "Re-using existing connection" in out.stderr
    assert route.call_count == 2
    assert json.loads(route.calls.last.request.content) == {"item": 1}
    route.side_effect = ConnectionReset()
    failed = subprocess.run(
        ["curl", "-sS", "-X", "POST", server.url + "/v1/orders"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert failed.returncode == 56  # curl: "Failure in receiving network data"
    assert "reset by peer" in failed.stderr


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_node_client(server: MockServer) -> None:
    server.get("/v1/users/7").respond(200, json={"id": 7})
    script = (
        "require('http').get(process.argv[1], r => { let b = '';"
        " r.on('data', c => b += c); r.on('end', () => console.log(r.statusCode, b)); })"
    )
    out = subprocess.run(
        ["node", "-e", script, server.url + "/v1/users/7"],
        capture_output=True, text=True, check=True, timeout=30,
    )  # fmt: skip
    status, _, body = out.stdout.strip().partition(" ")
    assert (status, json.loads(body)) == ("200", {"id": 7})


def test_httpx_exceptions_as_side_effects_are_done_to_the_socket(server: MockServer) -> None:
    route = server.get("/x").mock(side_effect=httpx.ConnectError)
    with pytest.raises(httpx.ReadError, match="reset by peer"):
        httpx.get(server.url + "/x")
    route.side_effect = httpx.ReadTimeout
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(server.url + "/x", timeout=0.2)
    assert route.call_count == 2


def test_async_side_effects_run_on_the_servers_loop(server: MockServer) -> None:
    import asyncio  # noqa: PLC0415

    async def slow_echo(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0.05)
        return httpx.Response(200, content=request.content[::-1])

    server.post("/echo").mock(side_effect=slow_echo)
    assert httpx.post(server.url + "/echo", content=b"abc").content == b"cba"
