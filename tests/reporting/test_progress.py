"""Progress: a line when a server starts, image pulls shown, teardown time reported."""

from __future__ import annotations

import pytest
from reporting_project import PG_TESTS, docker_answers, run, summary

from pytest_integration_kit.reporting.progress import Progress


def test_a_line_when_a_server_starts_and_the_teardown_time(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(PG_TESTS)
    result = run(pytester, "--integration-backend=local")
    result.assert_outcomes(passed=2)
    lines = result.stdout.lines
    starting = lines.index("starting postgres on local (binaries on PATH)…")
    first_test = next(i for i, line in enumerate(lines) if line.startswith("test_a_line"))
    assert starting < first_test  # said before the wait, not after
    result.stdout.fnmatch_lines(["*integration services*", "stopped 1 server in *.* s"])


def test_quiet_keeps_the_summary_only(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(PG_TESTS)
    result = run(pytester, "-q", "--integration-backend=local")
    result.assert_outcomes(passed=2)
    assert "starting postgres" not in result.stdout.str()
    assert "stopped 1 server in" in summary(result)


def test_an_image_pull_is_shown(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    if not docker_answers():
        pytest.skip("needs a Docker engine (CI runs with one)")
    monkeypatch.setenv("INTEGRATION_POSTGRES_IMAGE", "pytest-integration-kit/absent:1")
    pytester.makepyfile(PG_TESTS)
    result = run(pytester)
    result.assert_outcomes(passed=2, warnings=1)
    result.stdout.fnmatch_lines(
        [
            "pulling pytest-integration-kit/absent:1 (not present on the Docker engine)…",
            "starting postgres on local (binaries on PATH)…",
        ]
    )


def test_pull_progress_rewrites_one_line_on_a_terminal() -> None:
    written: list[str] = []
    rewritten: list[str] = []
    progress = Progress(written.append, rewritten.append)
    progress.event("postgres", "pull", "pulling postgres:17.6 (not present…)…")
    progress.event("postgres", "pull", "pulling postgres:17.6: 40/120 MB")
    progress.event("postgres", "start", "starting postgres on docker (postgres:17.6)…")
    progress.event("postgres", "ready", "postgres ready on docker in 1.00 s")
    progress.flush()
    assert rewritten == [
        "pulling postgres:17.6 (not present…)…",
        "pulling postgres:17.6: 40/120 MB",
    ]
    # The rewritten line is ended before the next; "ready" only with -v.
    assert written == ["", "starting postgres on docker (postgres:17.6)…"]
    assert progress.announced == {"postgres"}


def test_without_a_terminal_a_pull_is_one_line() -> None:
    written: list[str] = []
    progress = Progress(written.append, None, verbose=True)
    progress.event("redis", "pull", "pulling redis:8.2…")
    progress.event("redis", "pull", "pulling redis:8.2: 1/9 MB")
    progress.event("redis", "ready", "redis ready on docker in 1.00 s")
    progress.flush()
    assert written == ["pulling redis:8.2…", "redis ready on docker in 1.00 s"]


def test_a_kept_server_being_probed_is_waited_for_by_nobody() -> None:
    """``attach``: the first test may start while the probe runs; nothing is written."""
    written: list[str] = []
    progress = Progress(written.append, None, verbose=True)
    progress.event("postgres", "attach", "postgres kept on local")
    progress.flush()
    assert written == []
    assert progress.announced == {"postgres"}
    progress.event("postgres", "ready", "postgres attached on local in 0.05 s")
    progress.flush()
    assert written == ["postgres attached on local in 0.05 s"]
