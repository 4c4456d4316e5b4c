"""One server per service per run, shared by every xdist worker; stopped at the end."""

from __future__ import annotations

import pytest
from user_project import Project, leftovers, make_project, using_tests


def _services_by_address(project: Project) -> dict[str, set[str]]:
    """Each service's servers, by address (docker's own addresses share a port)."""
    addresses: dict[str, set[str]] = {}
    for report in project.reports():
        addresses.setdefault(report["service"], set()).add(report["address"])
    return addresses


def test_xdist_workers_share_one_server_per_service(backend_env: str, project: Project) -> None:
    (project.path / "test_user.py").write_text(using_tests(count=4))
    result = project.run("-n", "2", "-v")
    assert result.returncode == 0, result.stdout + result.stderr
    reports = project.reports()
    assert len(reports) == 12
    # Both workers ran tests of every service...
    assert {r["worker"] for r in reports} == {"gw0", "gw1"}
    # ...on one server per service.
    assert {s: len(p) for s, p in _services_by_address(project).items()} == {
        "postgres": 1,
        "mysql": 1,
        "redis": 1,
    }
    assert {r["backend"] for r in reports} == {backend_env}
    # The summary names each server once, and who started it.
    summary = result.stdout.split("integration services", 1)[1]
    for service in ("postgres", "mysql", "redis"):
        assert sum(line.startswith(service) for line in summary.splitlines()) == 1
    # Nothing of the run is left: the controller stopped every server.
    (session,) = {r["session"] for r in reports}
    assert leftovers(session).empty, leftovers(session)


def test_only_needed_services_start(backend_env: str, project: Project) -> None:
    """A service no selected test needs is never started, with or without workers."""
    (project.path / "test_user.py").write_text(using_tests(count=2))
    result = project.run("-n", "2", "-k", "redis")
    assert result.returncode == 0, result.stdout + result.stderr
    assert set(_services_by_address(project)) == {"redis"}
    summary = result.stdout.split("integration services", 1)[1]
    assert "postgres" not in summary
    assert "mysql" not in summary


@pytest.mark.parametrize("backend", ["docker", "local"])
def test_two_sessions_side_by_side_each_with_two_workers(
    backend_env: str, pytester: pytest.Pytester
) -> None:
    """Two checkouts run at once, each -n 2: no collisions, no failures, nothing left."""
    projects = [make_project(pytester.path / name, using_tests(count=4)) for name in ("one", "two")]
    running = [p.popen("-n", "2") for p in projects]
    outputs = [proc.communicate(timeout=600)[0] for proc in running]
    for proc, output in zip(running, outputs, strict=True):
        assert proc.returncode == 0, output
        assert "12 passed" in output
    sessions = [{r["session"] for r in p.reports()} for p in projects]
    assert all(len(s) == 1 for s in sessions)
    assert sessions[0] != sessions[1]
    addresses = [_services_by_address(p) for p in projects]
    for service in ("postgres", "mysql", "redis"):
        assert len(addresses[0][service]) == len(addresses[1][service]) == 1
        assert addresses[0][service] != addresses[1][service]
    for session in sessions:
        assert leftovers(next(iter(session))).empty


def test_failing_test_report_carries_server_log_tail(backend_env: str, project: Project) -> None:
    # The failure involves both servers: each driver's error is in its chain.
    (project.path / "test_user.py").write_text(
        "import psycopg, redis\n"
        "def test_broken(postgres_server, redis_server):\n"
        "    try:\n"
        "        redis.Redis.from_url(redis_server.url).execute_command('NO_SUCH_COMMAND')\n"
        "    finally:\n"
        "        psycopg.connect(host=postgres_server.host, port=postgres_server.port,\n"
        "                        user=postgres_server.user, password='wrong', dbname='x')\n"
    )
    result = project.run("-n", "2")
    assert result.returncode == 1
    out = result.stdout
    if backend_env == "url":
        # A server someone else runs has no log here.
        assert "server log" not in out
        return
    assert "integration postgres server log (last 40 lines)" in out
    assert "integration redis server log (last 40 lines)" in out
    assert "ready to accept connections" in out.lower() or "Ready to accept" in out
