"""Generic containers: container_server_factory with each kind of readiness, on docker
and (with a launch command) local, with the marker, report lines and env of a service."""

from __future__ import annotations

import pytest

#: A small HTTP server in Perl (the offline base image has Perl): it waits a moment,
#: says "serving" twice, leaves ready.flag in its directory, then answers GET /health
#: with 200 and the GREETING variable, anything else with 404.
CONFTEST = r'''
import urllib.request

from pytest_integration_kit import Command, Http, LogLine, Tcp, container_server_factory

WEB = """
use IO::Socket::INET; $| = 1; $SIG{CHLD} = "IGNORE";
select(undef, undef, undef, 0.5);
my $s = IO::Socket::INET->new(LocalAddr => $ARGV[1], LocalPort => $ARGV[0],
                              Listen => 16, ReuseAddr => 1) or die "web: $!\\n";
print "serving\\n"; print "serving\\n";
open(my $f, ">", "ready.flag") or die "flag: $!\\n"; close $f;
while (1) { my $c = $s->accept or next; my $req = <$c> // "";
            while (my $l = <$c>) { last if $l =~ /^\\r?\\n$/ }
            my ($path) = $req =~ m{^GET (\\S+)}; my $body = $ENV{GREETING} // "ok";
            my $code = ($path // "") eq "/health" ? "200 OK" : "404 Not Found";
            print $c "HTTP/1.0 $code\\r\\nContent-Length: " . length($body)
                . "\\r\\nConnection: close\\r\\n\\r\\n$body"; close $c }
"""


def answers(endpoint):
    with urllib.request.urlopen(f"http://{endpoint.host}:{endpoint.port}/health", timeout=2) as r:
        return r.status == 200


web = container_server_factory(
    "web",
    image="pytest-integration-kit/base:bookworm",
    port=8080,
    env={"GREETING": "hello"},
    command=["perl", "-e", WEB, "8080", "0.0.0.0"],
    launch=["perl", "-e", WEB, "{port}", "127.0.0.1"],
    ready=READY,
    title="Web",
    scheme="http",
)
'''

TESTS = """
import urllib.request

def test_web(web, web_server):
    assert (web.host, web.port) == (web_server.host, web_server.port)
    with urllib.request.urlopen(f"http://{web.host}:{web.port}/health", timeout=10) as r:
        assert r.status == 200
        assert r.read() == b"hello"

def test_other():
    pass
"""

READINESS = {
    "tcp": "Tcp()",
    "http": "Http('/health', status=200)",
    "log": "LogLine(r'^serving$', count=2)",
    "command": "Command(['test', '-e', 'ready.flag'])",
    "callable": "answers",
}


@pytest.mark.parametrize("backend", ["docker", "local"])
@pytest.mark.parametrize("kind", sorted(READINESS))
def test_generic_container_with_each_readiness(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, backend: str, kind: str
) -> None:
    monkeypatch.setenv("INTEGRATION_MISSING", "fail")
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makeconftest(CONFTEST.replace("ready=READY", f"ready={READINESS[kind]}"))
    pytester.makepyfile(test_web=TESTS)
    result = pytester.runpytest_subprocess(
        "-p", "no:randomly", f"--integration-web-backend={backend}", "-m", "requires_web"
    )
    result.assert_outcomes(passed=1, deselected=1)
    result.stdout.fnmatch_lines(
        [f"integration: web {backend} (from cli)*", f"web *{backend} *Web ready*"]
    )


def test_a_readiness_that_never_passes_times_out_naming_it(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INTEGRATION_MISSING", "fail")
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makeconftest(CONFTEST.replace("ready=READY", "ready=Http('/nowhere')"))
    pytester.makepyfile(test_web=TESTS)
    result = pytester.runpytest_subprocess(
        "-p",
        "no:randomly",
        "--integration-web-backend=local",
        "--integration-startup-timeout=3",
        "-m",
        "requires_web",
    )
    result.assert_outcomes(errors=1, deselected=1)
    result.stdout.fnmatch_lines(
        [
            "*Web (local*was not ready after 3 s*",
            "Last probe error: NotReady: GET /nowhere answered 404, not (200,)",
        ]
    )
