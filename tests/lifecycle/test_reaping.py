"""Nothing leaked after kill -9: the next run reaps a dead session, never a live one."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest
from user_project import Project, leftovers, make_project, using_tests, wait_for

from pytest_integration_kit.lifecycle.attached import docker_client
from pytest_integration_kit.lifecycle.owner import Owner, pid_alive, process_start
from pytest_integration_kit.lifecycle.reaper import Reaper

#: A test that reports its servers, then waits until killed (or told to finish).
BLOCKING_TEST = """
import os, time

def test_hold(postgres_server, mysql_server, redis_server, report):
    report(service="all", address=postgres_server.address)
    release = os.environ.get("PIK_RELEASE", "")
    for _ in range(6000):
        if release and os.path.exists(release):
            return
        time.sleep(0.1)
"""

ON_HOST = pytest.mark.parametrize("backend", ["docker", "local"])


def _hold(project: Project, *args: str) -> tuple[subprocess.Popen[str], str]:
    """Start a run that holds its servers; returns it and its session id."""
    process = project.popen(*args)
    wait_for(lambda: project.reports() or process.poll() is not None, what="the servers")
    assert process.poll() is None, process.communicate()[0]
    (session,) = {r["session"] for r in project.reports()}
    return process, session


def _kill9(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=30)  # also closes the pipe


@ON_HOST
@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["alone", "xdist"])
def test_kill_9_of_pytest_then_a_new_run_leaves_nothing(
    backend_env: str, pytester: pytest.Pytester, workers: list[str]
) -> None:
    dead = make_project(pytester.path / "dead", BLOCKING_TEST)
    process, session = _hold(dead, *workers)
    (tester,) = {r["pid"] for r in dead.reports()}
    _kill9(process)
    before = leftovers(session)
    # kill -9 gives no chance to clean up: the servers are still there...
    assert before.containers if backend_env == "docker" else before.processes
    # ...until any later run on this host starts (it needs no server of its own).
    later = make_project(pytester.path / "later", "def test_nothing():\n    pass\n")
    result = later.run()
    assert result.returncode == 0, result.stdout
    after = leftovers(session)
    # (The later run, or any other one started meanwhile on this host, reaped it.)
    assert after.empty, after
    # An xdist worker orphaned by its controller's death is ended too.
    wait_for(lambda: not pid_alive(tester), timeout=10, what="the orphaned worker to end")


@ON_HOST
def test_kill_9_of_one_xdist_worker_leaves_nothing(
    backend_env: str, pytester: pytest.Pytester
) -> None:
    """The crashed worker's servers keep serving the others; the controller stops them."""
    tests = using_tests(count=3) + (
        "\n\ndef test_crash(postgres_server, mysql_server, redis_server, report):\n"
        "    report(service='crash', port=0)\n"
        "    os.kill(os.getpid(), 9)\n"
    )
    project = make_project(pytester.path / "crash", tests)
    result = project.run("-n", "2")
    assert "worker 'gw" in result.stdout, result.stdout
    assert "crashed" in result.stdout
    assert "9 passed" in result.stdout, result.stdout
    (session,) = {r["session"] for r in project.reports()}
    assert leftovers(session).empty, leftovers(session)


@ON_HOST
def test_reaping_spares_a_live_session(
    backend_env: str, pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    alive = make_project(pytester.path / "alive", BLOCKING_TEST)
    release = pytester.path / "release"
    monkeypatch.setenv("PIK_RELEASE", str(release))
    process, session = _hold(alive)
    other = make_project(pytester.path / "other", "def test_nothing():\n    pass\n")
    assert other.run().returncode == 0
    still = leftovers(session)
    assert still.containers if backend_env == "docker" else still.processes
    release.touch()
    output = process.communicate(timeout=300)[0]
    assert process.returncode == 0, output
    assert leftovers(session).empty


@ON_HOST
def test_reaping_spares_kept_servers(
    backend_env: str, pytester: pytest.Pytester, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dead = make_project(pytester.path / "kept", BLOCKING_TEST)
    process, _ = _hold(dead, "--integration-reuse")
    (address,) = {r["address"] for r in dead.reports()}
    _kill9(process)
    later = make_project(pytester.path / "later", "def test_nothing():\n    pass\n")
    assert later.run().returncode == 0
    # Kept servers live on (in the cache dir for local ones) and are attached next time.
    monkeypatch.setenv("PIK_RELEASE", str(cache_dir))
    again = dead.run("--integration-reuse")
    assert again.returncode == 0, again.stdout
    assert {r["address"] for r in dead.reports()} == {address}
    assert again.stdout.count("reused (kept)") == 3, again.stdout


def test_owner_identity_tells_a_reused_pid_from_the_owner() -> None:
    """Library level: a dead pid, or a live pid with another start time, is not the owner."""
    me = Owner.current()
    assert me.is_alive()
    assert me.start == process_start(os.getpid())
    assert not Owner(me.pid, me.host, me.start + "0").is_alive()
    finished = subprocess.Popen(["true"])
    finished.wait()
    assert not Owner(finished.pid, me.host, "").is_alive()
    # Another host's sessions are never judged from here.
    assert Owner(finished.pid, "some-other-host", "").is_alive()
    assert not Reaper(docker=False).reap_session("no-such-session")


@pytest.mark.parametrize("backend", ["docker"])
def test_ryuk_asked_for_but_absent_falls_back_to_label_reaping(
    backend_env: str, pytester: pytest.Pytester
) -> None:
    from testcontainers.core.config import testcontainers_config  # noqa: PLC0415

    if _image_present(testcontainers_config.ryuk_image):
        pytest.skip("this test is about a host without the Ryuk image")
    project = make_project(pytester.path / "app", using_tests(count=1))
    result = project.run("--integration-ryuk", "-k", "redis")
    assert result.returncode == 0, result.stdout
    (session,) = {r["session"] for r in project.reports()}
    assert leftovers(session).empty
    assert not docker_client().containers.list(
        all=True, filters={"ancestor": "testcontainers/ryuk"}
    )


def _image_present(image: str) -> bool:
    try:
        docker_client().images.get(image)
    except Exception:
        return False
    return True
