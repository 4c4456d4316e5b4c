"""The kit's modules imported after the plugin loads are not rewritten by pytest: its
threads import modules on first use, and two threads parsing modules for the rewrite
at once crash CPython before 3.11.9 (gh-106905)."""

from __future__ import annotations

import pytest

TEST = """
import importlib
import sys
import threading


def test_lazily_imported_modules_are_not_rewritten():
    name = "pytest_integration_kit.lifecycle.warm"
    assert name not in sys.modules  # imported on first use, as in a server's start
    found = []
    thread = threading.Thread(target=lambda: found.append(importlib.import_module(name)))
    thread.start()
    thread.join(timeout=30)
    (module,) = found
    assert type(module.__loader__).__name__ != "AssertionRewritingHook"
    # The user's own test modules still are.
    assert type(sys.modules[__name__].__loader__).__name__ == "AssertionRewritingHook"
"""


def test_the_kits_modules_are_imported_without_assertion_rewriting(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_rewrite=TEST)
    # A subprocess: the plugin is loaded from its entry point, as in a user's run.
    result = pytester.runpytest_subprocess("-p", "no:randomly")
    result.assert_outcomes(passed=1)


IN_PROCESS_TEST = """
import sys

import pytest_integration_kit.lifecycle as lifecycle


def test_no_hook_of_this_process_would_rewrite_a_kit_module():
    hooks = [f for f in sys.meta_path if type(f).__name__ == "AssertionRewritingHook"]
    assert hooks
    for hook in hooks:
        assert hook.find_spec("pytest_integration_kit.lifecycle.warm", lifecycle.__path__) is None
    # The user's own test modules still are rewritten.
    assert type(sys.modules[__name__].__loader__).__name__ == "AssertionRewritingHook"
"""


def test_nor_are_they_in_a_later_session_of_the_same_process(pytester: pytest.Pytester) -> None:
    """``pytest.main()`` run again in one process (pytester's in-process runs, a tool's
    loop): the plugin module is imported once, but each session's rewrite hook marks
    the kit's package anew. Found as a flaky ``SystemError`` in the reaper's thread."""
    pytester.makepyfile(test_rewrite=IN_PROCESS_TEST)
    result = pytester.runpytest_inprocess("-p", "no:randomly", "-p", "no:asyncio")
    result.assert_outcomes(passed=1)
