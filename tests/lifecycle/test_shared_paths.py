"""Paths in shared directories: nothing planted by another user is followed, chmod-ed,
written into or trusted, and a run never crashes because of it."""

from __future__ import annotations

import os
import pwd
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from user_project import leftovers, make_project

from pytest_integration_kit.backends.local import WORKDIR_PREFIX
from pytest_integration_kit.lifecycle.owner import Owner
from pytest_integration_kit.lifecycle.paths import UnsafeDirectory, private_dir
from pytest_integration_kit.lifecycle.reaper import Reaper
from pytest_integration_kit.lifecycle.run import RunDirectory

NO_SERVER = "def test_plain():\n    assert 1 + 1 == 2\n"
WITH_SERVERS = """
import redis, psycopg

def test_plain():
    assert 1 + 1 == 2

def test_redis(redis_server):
    client = redis.Redis(host=redis_server.host, port=redis_server.port,
                         password=redis_server.password)
    assert client.ping()
    client.close()

def test_postgres(postgres_server):
    with psycopg.connect(host=postgres_server.host, port=postgres_server.port,
                         user=postgres_server.user, password=postgres_server.password,
                         dbname=postgres_server.database) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
"""


def _uid() -> int:
    return os.geteuid()


@pytest.fixture
def shared_tmp(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A TMPDIR of the inner runs' own, shared like /tmp (1777): what a planter sees."""
    path = Path(tempfile.mkdtemp(prefix="pik-shared-"))
    path.chmod(0o1777)
    monkeypatch.setenv("TMPDIR", str(path))
    monkeypatch.setenv("INTEGRATION_BACKEND", "local")
    yield path
    subprocess.run(["rm", "-rf", str(path)], check=False)


@pytest.fixture
def scratch() -> Iterator[Path]:
    """A directory of ours with known mode and contents, the target of planted links."""
    path = Path(tempfile.mkdtemp(prefix="pik-scratch-"))
    path.chmod(0o755)
    (path / "keep.txt").write_text("untouched\n")
    yield path
    subprocess.run(["rm", "-rf", str(path)], check=False)


def _snapshot(path: Path) -> tuple[int, int, list[str]]:
    info = path.stat()
    return stat.S_IMODE(info.st_mode), info.st_uid, sorted(os.listdir(path))


def test_a_symlink_planted_as_the_runs_dir_is_never_followed(
    pytester: pytest.Pytester, shared_tmp: Path, scratch: Path
) -> None:
    planted = shared_tmp / f"pytest-integration-kit.runs-{_uid()}"
    planted.symlink_to(scratch)
    before = _snapshot(scratch)
    project = make_project(pytester.path / "app", WITH_SERVERS)

    result = project.run("-v")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 passed" in result.stdout
    assert _snapshot(scratch) == before  # not chmod-ed, nothing written into it
    assert planted.is_symlink()
    # The run said where it went instead, and cleaned that up.
    assert f"{planted} is not a directory of its own" in result.stdout, result.stdout
    assert not list(shared_tmp.glob(f"{planted.name}-*"))


def test_a_symlink_planted_as_the_runs_dir_with_xdist(
    pytester: pytest.Pytester, shared_tmp: Path, scratch: Path
) -> None:
    planted = shared_tmp / f"pytest-integration-kit.runs-{_uid()}"
    planted.symlink_to(scratch)
    before = _snapshot(scratch)
    project = make_project(pytester.path / "app", WITH_SERVERS)

    result = project.run("-n", "2")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 passed" in result.stdout
    assert _snapshot(scratch) == before


@pytest.fixture
def nobody() -> pwd.struct_passwd:
    """The ``nobody`` user, to plant directories as another user (needs root)."""
    if os.geteuid() != 0:
        pytest.skip("planting a directory as another user needs root")
    return pwd.getpwnam("nobody")


def _plant_foreign_dir(path: Path, user: pwd.struct_passwd) -> None:
    """What `mkdir -m 777 <path>` run as ``user`` leaves."""
    path.mkdir()
    os.chown(path, user.pw_uid, user.pw_gid)
    path.chmod(0o777)


def test_a_runs_dir_another_user_made_breaks_no_run(
    pytester: pytest.Pytester, shared_tmp: Path, nobody: pwd.struct_passwd
) -> None:
    planted = shared_tmp / f"pytest-integration-kit.runs-{_uid()}"
    _plant_foreign_dir(planted, nobody)

    # A suite that uses no server does not need the runs dir at all: not even a note.
    plain = make_project(pytester.path / "plain", NO_SERVER)
    result = plain.run()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "INTERNALERROR" not in result.stdout + result.stderr
    assert "refusing" not in result.stdout

    # One that uses servers runs them from a private directory of its own, and says so.
    servers = make_project(pytester.path / "servers", WITH_SERVERS)
    result = servers.run()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 passed" in result.stdout
    assert f"{planted} belongs to uid {nobody.pw_uid}" in result.stdout, result.stdout
    assert os.listdir(planted) == []  # nothing of ours was written into it
    assert stat.S_IMODE(planted.stat().st_mode) == 0o777
    assert planted.stat().st_uid == nobody.pw_uid


def test_runs_dirs_writable_by_others_are_refused(tmp_path: Path) -> None:
    """Library level: an existing directory is checked, never chmod-ed."""
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(UnsafeDirectory, match="writable by other users"):
        private_dir(shared)
    assert stat.S_IMODE(shared.stat().st_mode) == 0o777
    link = tmp_path / "link"
    link.symlink_to(shared)
    with pytest.raises(UnsafeDirectory, match="not a directory of its own"):
        private_dir(link)
    made = private_dir(tmp_path / "a" / "b")
    assert stat.S_IMODE(made.stat().st_mode) == 0o700
    assert private_dir(made) == made  # our own private one: used as it is


ALL_SERVERS = (
    WITH_SERVERS
    + """
import pymysql

def test_mysql(mysql_server, report):
    report(service="mysql")
    conn = pymysql.connect(host=mysql_server.host, port=mysql_server.port,
                           user=mysql_server.user, password=mysql_server.password)
    with conn.cursor() as cur:
        cur.execute("SELECT 1")
        assert cur.fetchone() == (1,)
    conn.close()
"""
)


@pytest.fixture
def long_tmp(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A 60-character TMPDIR (as on macOS or in pytester), enterable by servers' users."""
    top = Path(tempfile.mkdtemp(prefix="pik-long-"))
    path = top / ("t" * (60 - len(str(top)) - 1))
    path.mkdir()
    for directory in (top, path):
        directory.chmod(0o755)
    assert len(str(path)) == 60
    monkeypatch.setenv("TMPDIR", str(path))
    monkeypatch.setenv("INTEGRATION_BACKEND", "local")
    yield path
    subprocess.run(["rm", "-rf", str(top)], check=False)


@pytest.mark.parametrize("reuse", [[], ["--integration-reuse"]], ids=["fresh", "reuse"])
def test_local_servers_start_with_a_long_tmpdir(
    pytester: pytest.Pytester, long_tmp: Path, cache_dir: Path, reuse: list[str]
) -> None:
    project = make_project(pytester.path / "app", ALL_SERVERS)
    result = project.run(*reuse)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 passed" in result.stdout
    if reuse:  # and the kept servers are attached again
        again = project.run(*reuse)
        assert again.returncode == 0, again.stdout
        assert again.stdout.count("reused (kept)") == 3, again.stdout
    else:  # nothing left: neither the servers' directories nor their socket dirs
        (session,) = {r["session"] for r in project.reports()}
        assert leftovers(session).empty, leftovers(session)
        assert not list(long_tmp.glob(f"{WORKDIR_PREFIX}*"))


@pytest.mark.skipif(os.geteuid() != 0, reason="servers run as another user only under root")
def test_root_with_a_private_tmpdir_starts_local_servers(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Root's TMPDIR is 0700: the servers' users (postgres, nobody) cannot enter it, so
    their directories go to /tmp instead (a private mkdtemp each), and are removed."""
    private = Path(tempfile.mkdtemp(prefix="pik-private-"))  # 0700, root's
    monkeypatch.setenv("TMPDIR", str(private))
    monkeypatch.setenv("INTEGRATION_BACKEND", "local")
    try:
        project = make_project(pytester.path / "app", ALL_SERVERS)
        result = project.run()
        assert result.returncode == 0, result.stdout + result.stderr
        assert "4 passed" in result.stdout
        (session,) = {r["session"] for r in project.reports()}
        assert leftovers(session).empty, leftovers(session)
        shared_tmp = Path("/tmp")  # noqa: S108 - where the servers' directories went
        assert not list(shared_tmp.glob(f"{WORKDIR_PREFIX}{session}-*"))
    finally:
        subprocess.run(["rm", "-rf", str(private)], check=False)


def test_the_reaper_never_follows_a_planted_server_dir(tmp_path: Path) -> None:
    """A symlink named like a dead session's server dir must not make the reaper stop
    the processes working where it points (``/`` would be every daemon's cwd)."""
    finished = subprocess.Popen(["true"])
    finished.wait()
    runs = tmp_path / "runs"
    RunDirectory.create("deadbeef0001", Owner(finished.pid, Owner.current().host, ""), runs)
    temp = tmp_path / "temp"
    temp.mkdir()
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("untouched\n")
    sleeper = subprocess.Popen(["sleep", "60"], cwd=victim)
    try:
        (temp / f"{WORKDIR_PREFIX}deadbeef0001-postgres-planted").symlink_to(victim)
        report = Reaper(runs_root=runs, temp_dir=temp, docker=False).reap_dead()
        assert report.runs == ["deadbeef0001"]  # the dead run itself is reaped
        assert sleeper.poll() is None  # but nothing where the link points
        assert (victim / "keep.txt").read_text() == "untouched\n"
        assert report.workdirs == []
    finally:
        sleeper.kill()
        sleeper.wait()
