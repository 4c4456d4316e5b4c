"""A run that needs no server imports no driver, client or container library."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pytest_integration_kit.lifecycle.engine import labelled_containers

#: What a run without servers must not import (the plugin's costly dependencies).
HEAVY = frozenset(
    {
        "sqlalchemy",
        "testcontainers",
        "docker",
        "requests",
        "redis",
        "httpx",
        "respx",
        "psycopg",
        "psycopg2",
        "asyncpg",
        "pymysql",
        "aiomysql",
        "alembic",
    }
)

#: What importing the plugin must not import either (issue #11): the layers and libraries
#: that only a server needs. They are imported by the fixture, hook or thread using them.
NOT_AT_IMPORT = HEAVY | {
    "psutil",
    "filelock",
    "http.client",
    # The async fixtures are made at pytest_configure, once pytest-asyncio is loaded.
    "asyncio",
    "pytest_asyncio",
    "pytest_integration_kit.backends.docker",
    "pytest_integration_kit.backends.local",
    "pytest_integration_kit.backends.local_runner",
    "pytest_integration_kit.isolation.admin",
    "pytest_integration_kit.isolation.postgres_admin",
    "pytest_integration_kit.isolation.mysql_admin",
    "pytest_integration_kit.isolation.connections",
    "pytest_integration_kit.isolation.async_engines",
    "pytest_integration_kit.isolation.batched_savepoints",
    "pytest_integration_kit.isolation.cleaning",
    "pytest_integration_kit.isolation.databases",
    "pytest_integration_kit.isolation.errors",
    "pytest_integration_kit.isolation.naming",
    "pytest_integration_kit.isolation.template_databases",
    "pytest_integration_kit.isolation.redis",
    "pytest_integration_kit.isolation.redis_clean",
    "pytest_integration_kit.isolation.schema",
    "pytest_integration_kit.isolation.workspace",
    "pytest_integration_kit.lifecycle.attached",
    "pytest_integration_kit.lifecycle.kept",
    "pytest_integration_kit.lifecycle.owner",
    "pytest_integration_kit.lifecycle.reaper",
    "pytest_integration_kit.lifecycle.servers",
    "pytest_integration_kit.lifecycle.kept_slots",
    "pytest_integration_kit.lifecycle.parallel_starts",
    "pytest_integration_kit.lifecycle.run_sharing",
    "pytest_integration_kit.lifecycle.session_end",
    "pytest_integration_kit.lifecycle.starting",
    "pytest_integration_kit.lifecycle.engine",
    "pytest_integration_kit.lifecycle.run",
    "pytest_integration_kit.backends.base",
    "pytest_integration_kit.services.container",
    # What only a started server uses: its endpoint and launch dataclasses.
    "pytest_integration_kit.services.endpoint",
    "pytest_integration_kit.services.launch",
    # A password or cookie is made when a server starts.
    "secrets",
    "hmac",
}

#: What a whole run whose tests use no server must not import either (issue #11): no
#: ServerSet is made, the reaper's pass imports no backend, and asks the Docker engine
#: without http.client. (psutil is left out: the reaper imports it when another run's
#: directory is there to judge, as on a machine running tests side by side.)
NOT_IN_A_RUN = HEAVY | {
    "filelock",
    "http.client",
    "ssl",
    "concurrent.futures",
    "pytest_integration_kit.backends.base",
    "pytest_integration_kit.backends.docker",
    "pytest_integration_kit.backends.local",
    "pytest_integration_kit.backends.local_runner",
    "pytest_integration_kit.lifecycle.attached",
    "pytest_integration_kit.lifecycle.servers",
    "pytest_integration_kit.lifecycle.kept_slots",
    "pytest_integration_kit.lifecycle.parallel_starts",
    "pytest_integration_kit.lifecycle.run_sharing",
    "pytest_integration_kit.lifecycle.session_end",
    "pytest_integration_kit.lifecycle.starting",
    "pytest_integration_kit.isolation.workspace",
    "pytest_integration_kit.isolation.redis",
    "pytest_integration_kit.isolation.redis_clean",
    "pytest_integration_kit.isolation.batched_savepoints",
    "pytest_integration_kit.services.endpoint",
    "pytest_integration_kit.services.launch",
}

#: A user's conftest that records the top-level modules loaded by the end of the run.
RECORDING_CONFTEST = """
import json, os, sys

def pytest_sessionfinish(session):
    with open(os.environ["PIK_MODULES_OUT"], "w") as out:
        json.dump(sorted({name.split(".")[0] for name in sys.modules}), out)
"""


#: The same, recording every module's full name once the run is over (the reaper's
#: pass is waited for at the end of the session).
RECORDING_FULL_CONFTEST = """
import json, os, sys

def pytest_unconfigure(config):
    with open(os.environ["PIK_MODULES_OUT"], "w") as out:
        json.dump(sorted(sys.modules), out)
"""


def _modules_of_run(
    pytester: pytest.Pytester,
    out: Path,
    *args: str,
    conftest: str = RECORDING_CONFTEST,
    output: list[str] | None = None,
) -> set[str]:
    pytester.makeconftest(conftest)
    pytester.makepyfile(
        test_plain="""
        import pytest

        @pytest.mark.parametrize("n", range(3))
        def test_plain(n):
            assert n < 3
        """
    )
    pytester.makeini("[pytest]\nmarkers =\n    smoke: a user's own marker\n")
    result = pytester.runpytest_subprocess("-p", "no:randomly", "-p", "no:cacheprovider", *args)
    result.assert_outcomes(passed=3)
    if output is not None:
        output.append(result.stdout.str())
    return set(json.loads(out.read_text()))


#: What docker-py brings: the reaper imports it to remove a dead session's container.
DOCKER_PY = frozenset({"docker", "requests", "urllib3", "websocket"})


@pytest.mark.parametrize("backend", ["auto", "docker", "local"])
def test_a_run_without_servers_imports_nothing_heavy(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, backend: str
) -> None:
    """The plugin adds none of HEAVY to what bare pytest (other plugins included) loads.

    Installed pytest plugins (respx's, anyio's) may load some of them in bare pytest too:
    the check is on what this plugin adds, and on the plugin really being active.
    """
    monkeypatch.setenv("INTEGRATION_BACKEND", backend)
    monkeypatch.setenv("PIK_MODULES_OUT", str(tmp_path / "with.json"))
    output: list[str] = []
    with_plugin = _modules_of_run(pytester, tmp_path / "with.json", output=output)
    monkeypatch.setenv("PIK_MODULES_OUT", str(tmp_path / "bare.json"))
    bare = _modules_of_run(pytester, tmp_path / "bare.json", "-p", "no:integration_kit")
    assert "pytest_integration_kit" in with_plugin
    assert "pytest_integration_kit" not in bare
    added = (with_plugin - bare) & HEAVY
    if re.search(r"reaped from dead sessions: [1-9]\d* container", output[0]):
        # A killed session's container was on the engine (another test's, running
        # beside this one): removing it is docker-py's work, and the summary says so.
        added -= DOCKER_PY
    assert sorted(added) == []


def test_a_run_without_servers_makes_no_server_set(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Nothing of the lifecycle layer but the reaper's pass: the ServerSet, the backends
    and their libraries are made and imported when a test first needs a server."""
    monkeypatch.setenv("PIK_MODULES_OUT", str(tmp_path / "with.json"))
    with_plugin = _modules_of_run(
        pytester, tmp_path / "with.json", conftest=RECORDING_FULL_CONFTEST
    )
    monkeypatch.setenv("PIK_MODULES_OUT", str(tmp_path / "bare.json"))
    bare = _modules_of_run(
        pytester,
        tmp_path / "bare.json",
        "-p",
        "no:integration_kit",
        conftest=RECORDING_FULL_CONFTEST,
    )
    assert "pytest_integration_kit.lifecycle.reaper" in with_plugin  # it did reap
    assert sorted((with_plugin - bare) & NOT_IN_A_RUN) == []


def test_importing_the_plugin_imports_no_server_layer() -> None:
    """What the plugin's import adds to pytest's: none of NOT_AT_IMPORT (a subprocess, so
    that nothing this test session imported counts)."""
    code = (
        "import json, sys, pytest; before = set(sys.modules); "
        "import pytest_integration_kit.plugin; "
        "print(json.dumps(sorted(set(sys.modules) - before)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    added = set(json.loads(out.stdout))
    assert "pytest_integration_kit.plugin" in added
    assert sorted(added & NOT_AT_IMPORT) == []


def test_the_engine_is_asked_without_docker_py_where_it_is_local(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """No socket: nothing of ours can exist; a TCP engine: docker-py must answer (None)."""
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path / 'no-engine.sock'}")
    assert labelled_containers("pytest-integration-kit.session") == []
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:2375")
    assert labelled_containers("pytest-integration-kit.session") is None
    monkeypatch.setenv("DOCKER_HOST", "ssh://someone@host")
    assert labelled_containers("pytest-integration-kit.session") is None


def test_the_engine_lists_labelled_containers_like_docker_py(engine_client: Any) -> None:
    """On the real engine: the same containers, with their labels, as docker-py lists."""
    client = engine_client
    label = "pytest-integration-kit.test-listing=yes"
    container = client.containers.create(
        "pytest-integration-kit/redis:7", labels={"pytest-integration-kit.test-listing": "yes"}
    )
    try:
        listed = labelled_containers(label)
        assert listed is not None
        assert [c["id"] for c in listed] == [container.id]
        assert listed[0]["labels"]["pytest-integration-kit.test-listing"] == "yes"
    finally:
        container.remove(force=True)
    assert labelled_containers(label) == []
