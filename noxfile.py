"""Developer sessions: tests, lint, typecheck, docs, bench."""

from __future__ import annotations

import fcntl
import glob
import hashlib
import os
from pathlib import Path

import nox

nox.options.sessions = ["lint", "typecheck", "tests"]
nox.options.default_venv_backend = "venv"
# Servers, drivers and images are provisioned by ./dev; reuse the venv between runs.
nox.options.reuse_existing_virtualenvs = True

TEST_DEPS = [
    "pytest-xdist",
    "pytest-asyncio",
    "pytest-randomly",
    "factory_boy",
    "alembic",
    "requests",
    "pytest-socket",  # the network guard honours its markers and --allow-hosts
    "sybil>=9",
    "pyyaml",
    # the frameworks the app-client tests and docs/frameworks.md run
    "fastapi",
    "starlette",
    "litestar",
    "flask",
    "flask-sqlalchemy",
    "sqlmodel",  # also the apps tests: the app's own Session class
    "uvicorn",
    "psycopg2-binary",  # Endpoint.url_for is tried with every driver
    "asyncmy",
]


#: What the package's own sessions (tests, typecheck, docs, chaos, bench) need: they
#: share one environment (see _package_env).
PACKAGE_DEPS = [
    *TEST_DEPS,
    "mypy",
    "types-requests",
    "types-psutil",
    "cryptography",
    "mkdocs-material",
    "mkdocstrings[python]",
]


def _wanted(requirements: list[str]) -> str:
    """What an environment holds: these requirements, for this checkout's package."""
    text = "\n".join([str(Path.cwd()), Path("pyproject.toml").read_text(), *requirements])
    return hashlib.sha256(text.encode()).hexdigest()


def _install_once(session: nox.Session, *requirements: str) -> None:
    """``pip install`` into the session's own virtualenv, skipped when it already holds
    ``requirements`` for this checkout (nox's reuse re-runs pip every time: 15-20 s)."""
    stamp = Path(session.virtualenv.location) / "pik-installed"
    wanted = _wanted(list(requirements))
    if stamp.is_file() and stamp.read_text() == wanted:
        return
    # run_install: done under --install-only, skipped under --no-install (-R).
    if session.run_install("python", "-m", "pip", "install", "-q", *requirements):
        stamp.write_text(wanted)


def _package_env(session: nox.Session) -> Path:
    """The bin directory of the environment the package's sessions share.

    Each of them used to build its own virtualenv from the same heavy set (1 to 2.5 min
    apiece on a fresh CI machine) and re-run pip in it on every run (about 18 s apiece).
    The shared one is made on first use and reinstalled only when what it installs
    changes or its editable install points at another checkout (a second clone on the
    same machine, CI's, would otherwise test the first one's code). A lock keeps two runs
    from installing into it at once.
    """
    location = session.cache_dir / "package-py3.11"
    bin_dir = location / "bin"
    wanted = _wanted(PACKAGE_DEPS)
    stamp = location / "pik-installed"
    location.parent.mkdir(parents=True, exist_ok=True)
    with (session.cache_dir / "package-py3.11.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        # run_install: done under --install-only, skipped under --no-install (-R).
        if not (bin_dir / "python").exists():
            session.run_install("python3.11", "-m", "venv", str(location), external=True)
        if not stamp.is_file() or stamp.read_text() != wanted:
            python = str(bin_dir / "python")
            pip = [python, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
            if session.run_install(*pip, "-e", ".[all]", *PACKAGE_DEPS, external=True):
                stamp.write_text(wanted)
    # What the commands run (an inner pytest, a subprocess) finds first is this environment.
    session.env["VIRTUAL_ENV"] = str(location)
    session.env["PATH"] = os.pathsep.join([str(bin_dir), os.environ.get("PATH", "")])
    return bin_dir


@nox.session(venv_backend="none")
def tests(session: nox.Session) -> None:
    """The project's tests: every backend for real (strict when CI is set).

    Two workers: most tests wait on servers and inner runs, not on the CPU. The tests
    that kill, reap or list kept servers host-wide share one worker (tests/conftest.py).
    """
    env = _package_env(session)
    session.run(env / "pytest", "-n", "2", "--dist", "loadgroup", *session.posargs, external=True)


@nox.session(python="3.11")
def lint(session: nox.Session) -> None:
    _install_once(session, "ruff")
    paths = ["src", "tests", "examples", "bench", "chaos", "noxfile.py", "conftest.py"]
    session.run("ruff", "check", *paths)
    session.run("ruff", "format", "--check", *paths)


@nox.session(venv_backend="none")
def typecheck(session: nox.Session) -> None:
    env = _package_env(session)
    # In the machine's cache: a fresh clone (CI's) would otherwise check every module cold.
    session.run(env / "mypy", "--cache-dir", str(session.cache_dir / "mypy"), external=True)


@nox.session(venv_backend="none")
def docs(session: nox.Session) -> None:
    # The test environment's plugins too: the fixtures page is what a user's run shows.
    env = _package_env(session)
    session.run(env / "python", "scripts/gen-reference", "--check", external=True)
    session.run(env / "mkdocs", "build", "--strict", external=True)


@nox.session(venv_backend="none")
def bench(session: nox.Session) -> None:
    """Print tables of per-operation costs as ratios to the floor, on the same servers."""
    env = _package_env(session)
    for script in sorted(glob.glob("bench/bench_*.py")):
        session.run(env / "python", script, *session.posargs, external=True)


@nox.session(venv_backend="none")
def chaos(session: nox.Session) -> None:
    """The chaos and fuzz suite: isolation fuzz, kill -9 at every stage, concurrent runs.

    ``nox -s chaos`` runs it in full; ``nox -s chaos -- --budget 240`` (or CHAOS_BUDGET)
    is the bounded form CI runs. Exit status 1 on any undocumented leak, hang, leftover.
    """
    env = _package_env(session)
    session.run(env / "python", "-m", "chaos", *session.posargs, external=True)


@nox.session(python="3.11")
@nox.parametrize("pytest_version", ["7.4.4", "9.1.1"])
def pytest_versions(session: nox.Session, pytest_version: str) -> None:
    """The settings layer and a first run on pytest's floor (7.4) and on 9.1.

    9.0 and 9.1 type-check ``[tool.pytest]`` values one type per key; 9.2 (the tests
    session) takes unions. Only what needs no server runs here, without the plugins
    that need a newer pytest; the ini's ``filterwarnings = error`` is dropped because
    pytest 7.4 with a current pluggy warns about its own usage errors.
    """
    _install_once(session, "-e", ".[all]", "alembic", "sybil>=9", f"pytest=={pytest_version}")
    session.run(
        "pytest",
        "-o",
        "addopts=-p pytester -p no:cacheprovider",
        "-o",
        "filterwarnings=ignore::pytest.PytestConfigWarning",
        "tests/services/test_settings.py",
        "tests/services/test_settings_fuzz.py",
        "tests/services/test_reference_docs.py",
        "-k",
        "not url_run and not warned_once",
        *session.posargs,
    )


#: What the lowest session runs with the floors: test tools, no web frameworks (their own
#: floors are far above ours).
LOWEST_TEST_DEPS = [
    "pytest-xdist",
    "pytest-asyncio",
    "pytest-randomly",
    "factory_boy",
    "alembic",
    "requests",
    "pytest-socket",
    "sybil>=9",
    "pyyaml",
    "psycopg2-binary",
    "asyncmy",
]
#: A meaningful subset: servers on every backend, isolation sync and async, Redis, mocks
#: (httpx, respx), the docker backend (testcontainers), integration_env and the URLs.
LOWEST_TESTS = [
    "tests/services/test_servers.py",
    "tests/isolation/test_sessions.py",
    "tests/isolation/test_async.py",
    "tests/isolation/test_redis.py",
    "tests/mocks/test_mock_fixtures.py",
    "tests/mocks/test_mock_server.py",
    "tests/apps/test_environment.py",
    "tests/apps/test_databases.py",
    "tests/apps/test_redis_password.py",
]


@nox.session(python="3.11")
def lowest(session: nox.Session) -> None:
    """The suite's core on the lowest versions pyproject.toml allows (what users may have).

    uv resolves the package's own requirements to their floors (``lowest-direct``); the
    test tools then install around them, held by those pins (pytest excepted: it runs
    the suite, and its floor is the pytest_versions session's).
    """
    session.install("uv")
    python = str(Path(session.virtualenv.location) / "bin" / "python")
    session.run(
        "uv", "pip", "install", "--python", python, "--resolution", "lowest-direct", "-e", ".[all]"
    )
    frozen = session.run("uv", "pip", "freeze", "--python", python, silent=True)
    pins = [
        line
        for line in str(frozen).splitlines()
        if "==" in line and not line.startswith(("pytest==", "pytest-integration-kit"))
    ]
    constraints = Path(session.create_tmp()) / "floors.txt"
    constraints.write_text("\n".join(pins) + "\n")
    session.run(
        "uv", "pip", "install", "--python", python, "-c", str(constraints), *LOWEST_TEST_DEPS
    )
    session.run("uv", "pip", "freeze", "--python", python)
    session.run("pytest", *(session.posargs or LOWEST_TESTS))


@nox.session(name="bench-anchors", python="3.11")
def bench_anchors(session: nox.Session) -> None:
    """Side by side with pytest-postgresql, pytest-databases, pytest-mock-resources and
    testcontainers: one markdown table of medians, x ours and x the floor."""
    session.install(
        "-e",
        ".[all]",
        "pytest-xdist",
        "pytest-asyncio",
        "pytest-postgresql>=10,<11",
        "pytest-redis>=5,<6",
        "pytest-databases[postgres,redis,mysql]>=0.19,<0.20",
        "pytest-mock-resources[docker]>=2.15,<3",
        "testcontainers[postgres,redis,mysql]>=4.15,<5",
        # redis-py wants it below Python 3.11.3, i.e. on the system interpreter that
        # the peers starting PostgreSQL themselves run on as the postgres user.
        "async-timeout",
    )
    session.run("python", "bench/anchors/run.py", *session.posargs)
