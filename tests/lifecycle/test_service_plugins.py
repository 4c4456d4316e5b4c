"""Services are plug-ins: one registered from a user's conftest and one from an installed
package's entry point each get settings, a marker, header and summary lines, a server
fixture, xdist sharing, reuse and reaping — with nothing else changed in the kit."""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import pytest
from user_project import REPORTING_CONFTEST, Project, leftovers, make_project, wait_for

#: A small service: a line echo server in Perl (the offline base image has Perl, not
#: Python), run by the local backend through a launch command and by docker as the
#: container's command. The whole of what a new service needs.
ECHO_SPEC = r'''
import shutil
import socket
from pathlib import Path

from pytest_integration_kit import BackendUnavailable, LocalLaunch, ServiceSpec

ECHO = """
use IO::Socket::INET; $| = 1; $SIG{CHLD} = "IGNORE";
my $s = IO::Socket::INET->new(LocalAddr => $ARGV[0], LocalPort => $ARGV[1],
                              Listen => 16, ReuseAddr => 1) or die "echo: $!\\n";
print "echo listening on $ARGV[0]:$ARGV[1]\\n";
while (1) { my $c = $s->accept or next;
            if (!fork) { while (my $l = <$c>) { print $c $l } exit 0 } close $c }
"""


class EchoSpec(ServiceSpec):
    """A line echo server: it sends back each line it gets."""

    name = "echo"
    title = "Echo"
    scheme = "tcp"
    container_port = 7007
    default_image = "pytest-integration-kit/base:bookworm"

    def container_command(self, credentials):
        return ["perl", "-e", ECHO, "0.0.0.0", str(self.container_port)]

    def find_binaries(self, bin_dir):
        perl = shutil.which("perl", path=str(bin_dir) if bin_dir else None)
        if perl is None:
            raise BackendUnavailable("no perl found for the echo service")
        return {"perl": Path(perl)}

    def prepare_local(self, *, binaries, workdir, port, credentials, runner):
        return LocalLaunch([str(binaries["perl"]), "-e", ECHO, "127.0.0.1", str(port)])

    def probe(self, endpoint, timeout):
        with socket.create_connection((endpoint.host, endpoint.port), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(b"ping\n")
            if s.makefile().readline() != "ping\n":
                raise ConnectionError("the echo server did not echo")
        return "1.0"
'''

#: The tests of the user's project: each talks to the echo server and reports its port.
ECHO_TESTS = """
import socket
import pytest

@pytest.mark.parametrize("n", range(4))
def test_echo(echo_server, report, n):
    with socket.create_connection((echo_server.host, echo_server.port), timeout=10) as s:
        s.sendall(f"hello {n}\\n".encode())
        assert s.makefile().readline() == f"hello {n}\\n"
    report(service="echo", address=echo_server.address, backend=echo_server.backend)

def test_without_a_server():
    pass
"""

HOLDING_TEST = """
import time

def test_hold(echo_server, report):
    report(service="echo", address=echo_server.address)
    time.sleep(600)
"""

ON_HOST = pytest.mark.parametrize("backend", ["docker", "local"])
HOW = pytest.mark.parametrize("how", ["conftest", "entry_point"])


def _echo_project(
    root: Path, tests: str, how: str, monkeypatch: pytest.MonkeyPatch, ini: str = ""
) -> Project:
    """A user's project whose echo service comes from its conftest or an installed package."""
    project = make_project(root, tests, ini=ini)
    if how == "conftest":
        (root / "conftest.py").write_text(
            ECHO_SPEC
            + "\nfrom pytest_integration_kit import register_service\n\n"
            + "register_service(EchoSpec())\n"
            + REPORTING_CONFTEST
        )
    else:
        # An installed distribution: a package plus its metadata with the entry point.
        site = root.parent / f"{root.name}-site"
        (site / "echo_kit").mkdir(parents=True, exist_ok=True)
        (site / "echo_kit" / "__init__.py").write_text(ECHO_SPEC)
        info = site / "echo_kit-1.0.dist-info"
        info.mkdir(exist_ok=True)
        (info / "METADATA").write_text("Metadata-Version: 2.1\nName: echo-kit\nVersion: 1.0\n")
        (info / "entry_points.txt").write_text(
            "[pytest_integration_kit.services]\necho = echo_kit:EchoSpec\n"
        )
        paths = [str(site), *filter(None, [os.environ.get("PYTHONPATH")])]
        monkeypatch.setenv("PYTHONPATH", ":".join(paths))
    return project


def _summary_lines(output: str, service: str) -> list[str]:
    section = output.split("integration services", 1)[-1]
    return [line for line in section.splitlines() if line.startswith(f"{service} ")]


@ON_HOST
@HOW
def test_registered_service_gets_settings_marker_reports_and_sharing(
    backend_env: str, pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    monkeypatch.setenv("INTEGRATION_ECHO_BIN_DIR", "/usr/bin")
    project = _echo_project(
        pytester.path / "app",
        ECHO_TESTS,
        how,
        monkeypatch,
        ini="integration_echo_image = pytest-integration-kit/base:bookworm\n",
    )
    result = project.run("-v", "-n", "2", f"--integration-echo-backend={backend_env}")
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    # Settings from each source, shown in the service's own header line.
    (header,) = [line for line in out.splitlines() if line.startswith("integration echo:")]
    assert f"backend={backend_env} (cli)" in header
    assert "image=pytest-integration-kit/base:bookworm (ini)" in header
    assert "bin_dir=/usr/bin (env)" in header
    assert "url=(unset) (default)" in header
    # One server for both workers, and one summary line for it.
    reports = project.reports()
    assert len(reports) == 4
    assert len({r["address"] for r in reports}) == 1
    assert {r["backend"] for r in reports} == {backend_env}
    (line,) = _summary_lines(out, "echo")
    address = re.escape(reports[0]["address"])
    assert re.search(rf"echo\s+{backend_env}\s+Echo 1\.0\s+{address}", line), line
    assert "reaped" not in out or "echo" not in out.split("reaped", 1)[1]
    # A usage error names the service's setting.
    bad = project.run("--integration-echo-backend=k8s")
    assert bad.returncode == 4, bad.stdout
    assert "integration_echo_backend: 'k8s' is not allowed" in bad.stderr
    # The marker is registered, applied from the fixture, and selects.
    selected = project.run("-m", "requires_echo", "--strict-markers")
    assert selected.returncode == 0, selected.stdout
    assert "4 passed, 1 deselected" in selected.stdout
    markers = project.run("--markers").stdout
    assert "@pytest.mark.requires_echo: the test uses a Echo server" in markers
    # The built-ins keep theirs.
    assert "@pytest.mark.requires_db:" in markers
    assert "@pytest.mark.requires_redis:" in markers


def test_registered_service_is_kept_and_reused(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, cache_dir: Path
) -> None:
    # One test for every backend and both ways: `kept remove` at a test's end removes
    # every kept container on the host, so reuse tests side by side remove each other's.
    monkeypatch.setenv("INTEGRATION_MISSING", "fail")
    chosen = os.environ.get("PIK_TEST_BACKENDS", "docker,local").split(",")
    for backend in [b for b in ("docker", "local") if b in chosen]:
        for how in ("conftest", "entry_point"):
            with monkeypatch.context() as patch:
                patch.setenv("INTEGRATION_BACKEND", backend)
                project = _echo_project(pytester.path / f"{backend}-{how}", ECHO_TESTS, how, patch)
                first = project.run("--integration-reuse", "-n", "2")
                assert first.returncode == 0, first.stdout + first.stderr
                (line,) = _summary_lines(first.stdout, "echo")
                assert "kept" in line
                assert backend in line
                second = project.run("--integration-reuse")
                assert second.returncode == 0, second.stdout + second.stderr
                (line,) = _summary_lines(second.stdout, "echo")
                assert "reused (kept)" in line, (backend, how, line)
                assert len({r["address"] for r in project.reports()}) == 1


@ON_HOST
@HOW
def test_registered_service_of_a_killed_run_is_reaped(
    backend_env: str, pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    dead = _echo_project(pytester.path / "dead", HOLDING_TEST, how, monkeypatch)
    process = dead.popen()
    wait_for(lambda: dead.reports() or process.poll() is not None, what="the echo server")
    assert process.poll() is None, process.communicate()[0]
    (session,) = {r["session"] for r in dead.reports()}
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=30)
    before = leftovers(session)
    assert before.containers if backend_env == "docker" else before.processes
    later = make_project(pytester.path / "later", "def test_nothing():\n    pass\n")
    result = later.run()
    assert result.returncode == 0, result.stdout
    assert leftovers(session).empty


def test_a_late_registration_is_refused_naming_where_to_register(
    pytester: pytest.Pytester,
) -> None:
    """A conftest below the rootdir loads during collection, after the settings were
    resolved: registering there is an error that says where to do it instead."""
    pytester.makeini("[pytest]\n")
    sub = pytester.path / "sub"
    sub.mkdir()
    (sub / "conftest.py").write_text(
        ECHO_SPEC + "\nfrom pytest_integration_kit import register_service\n"
        "register_service(EchoSpec())\n"
    )
    (sub / "test_it.py").write_text("def test_it():\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:randomly")
    assert result.ret != 0
    output = result.stdout.str() + result.stderr.str()
    assert "was registered after pytest_configure" in output
    assert "rootdir conftest.py" in output


def test_a_bad_spec_name_or_a_taken_name_is_refused(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        ECHO_SPEC + "\nfrom pytest_integration_kit import register_service\n"
        "class Taken(EchoSpec):\n    name = 'redis'\n"
        "register_service(Taken())\n"
    )
    pytester.makepyfile("def test_it():\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:randomly")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    output = result.stdout.str() + result.stderr.str()
    assert "the service name 'redis' is taken by pytest_integration_kit.services.redis" in output


def test_a_broken_entry_point_is_a_usage_error(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = pytester.path / "site"
    info = site / "broken_kit-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-kit\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[pytest_integration_kit.services]\nbroken = broken_kit_missing:Spec\n"
    )
    monkeypatch.setenv("PYTHONPATH", f"{site}:{os.environ.get('PYTHONPATH', '')}")
    pytester.makepyfile("def test_it():\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:randomly")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.str()
    assert "a service could not be registered" in err
    assert "entry point broken = broken_kit_missing:Spec (from broken-kit)" in err
    assert "No module named 'broken_kit_missing'" in err
    assert "Traceback" not in err


DOCS = Path(__file__).resolve().parents[2] / "docs" / "services.md"


@ON_HOST
def test_the_writing_a_service_example_runs(backend_env: str, pytester: pytest.Pytester) -> None:
    """docs/services.md: its conftest and test, as a user copies them."""
    conftest, test, *_ = re.findall(r"```python\n(.*?)```", DOCS.read_text(), re.S)
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makeconftest(conftest)
    pytester.makepyfile(test_echo=test)
    result = pytester.runpytest_subprocess(
        "-p", "no:randomly", f"--integration-echo-backend={backend_env}", "-m", "requires_echo"
    )
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [f"integration: echo {backend_env} (from cli)*", f"echo *{backend_env} *Echo 1.0*"]
    )
