"""What the reporting tests share: a user's tests, a dead Docker engine, no binaries."""

from __future__ import annotations

import pytest

#: A dead Docker engine: nothing listens on this socket.
DEAD_DOCKER = "unix:///nonexistent/pik-no-docker.sock"

PG_TESTS = """
def test_one(postgres_server):
    assert postgres_server.port

def test_two(postgres_server):
    assert postgres_server.port
"""


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    """The user's pytest in its own process, as they would run it."""
    return pytester.runpytest_subprocess("-p", "no:randomly", "-p", "no:asyncio", *args)


def summary(result: pytest.RunResult) -> str:
    """The ``integration services`` section and what follows."""
    return result.stdout.str().split("integration services", 1)[1]


def docker_answers() -> bool:
    """Whether a Docker engine answers here (CI has one)."""
    try:
        import docker  # noqa: PLC0415 - only where asked

        docker.from_env(timeout=5).ping()
    except Exception:
        return False
    return True
