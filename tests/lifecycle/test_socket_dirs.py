"""A local server's socket directory whose maker was killed before it linked it back
(between ``mkdtemp`` and the ``server`` link) is reaped by a later run; nothing else
of a like name is."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest


def _made(base: Path, name: str, *, age: float, mode: int = 0o711) -> Path:
    path = base / name
    path.mkdir()
    path.chmod(mode)
    then = time.time() - age
    os.utime(path, (then, then))
    return path


def test_a_socket_dir_left_unlinked_by_a_killed_run_is_reaped(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    tmp = pytester.path / "tmp"
    tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp))
    left = _made(tmp, "pik-8f8f38defb12-o10c48ej", age=60)
    being_made = _made(tmp, "pik-0123456789ab-abcdefgh", age=0, mode=0o700)
    someone_elses = _made(tmp, "pik-notes-12345678", age=60)
    (someone_elses / "keep.txt").write_text("mine")
    not_ours = _made(tmp, "pik-cache", age=60, mode=0o755)
    pytester.makepyfile("def test_nothing():\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:randomly")
    result.assert_outcomes(passed=1)
    assert not left.exists()
    assert being_made.is_dir()
    assert someone_elses.is_dir()
    assert not_ours.is_dir()
    assert (someone_elses / "keep.txt").read_text() == "mine"
