"""The end of a session waits for the reaper's pass a bounded time: a pass that hangs
(an engine that never answers) does not hang the run."""

from __future__ import annotations

import threading
import time

import pytest

from pytest_integration_kit.lifecycle import reaper
from pytest_integration_kit.lifecycle.reaping import BackgroundReap


def test_a_pass_that_does_not_end_is_left_behind_in_time(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    release = threading.Event()

    class Stuck:
        """A reaper whose pass waits (a stand-in for an engine that never answers)."""

        def __init__(self, **options: object) -> None:
            pass

        def reap_dead(self) -> reaper.ReapReport:
            release.wait(30)
            return reaper.ReapReport()

    monkeypatch.setattr(reaper, "Reaper", Stuck)
    reap = BackgroundReap.start(runs_root=None, docker=False)
    started = time.monotonic()
    try:
        report = reap.done(timeout=0.3)
    finally:
        release.set()
    assert time.monotonic() - started < 5
    assert report == reaper.ReapReport()
    assert "did not end within 0.3 s" in caplog.text
