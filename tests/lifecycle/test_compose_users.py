"""The bookkeeping of a Compose environment shared by a run's processes: who uses it,
who brings it up, who takes it down. (The environment itself is exercised for real in
tests/services/test_compose.py; here a recorder stands in for it, so that the users
file can be set up as a crashed worker or a live one leaves it.)"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from filelock import FileLock

from pytest_integration_kit.lifecycle.compose import shared_environment
from pytest_integration_kit.lifecycle.owner import process_start


class Recorder:
    """What shared_environment asked of the environment, in order."""

    def __init__(self, *, up_already: bool) -> None:
        self.calls: list[str] = []
        self.up_already = up_already

    def attach(self) -> bool:
        self.calls.append("attach")
        return self.up_already

    def up(self) -> Recorder:
        self.calls.append("up")
        return self

    def down(self) -> None:
        self.calls.append("down")

    def close(self) -> None:
        self.calls.append("close")


def _dead_pid() -> int:
    ended = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(ended.stdout)


def test_a_crashed_worker_listed_as_a_user_neither_keeps_it_up_nor_is_attached_to(
    tmp_path: Path,
) -> None:
    users = tmp_path / "compose-p.users"
    users.write_text(f"{_dead_pid()} 1.00\n")
    recorder = Recorder(up_already=True)
    with shared_environment(recorder, FileLock(tmp_path / "p.lock"), users):  # type: ignore[arg-type]
        assert users.read_text().split()[0] == str(os.getpid())  # the dead one struck off
    assert recorder.calls == ["up", "down"]  # the last one out
    assert not users.exists()


def test_a_live_user_is_attached_to_and_left_with_the_environment(tmp_path: Path) -> None:
    parent = os.getppid()
    users = tmp_path / "compose-p.users"
    users.write_text(f"{parent} {process_start(parent)}\n")
    recorder = Recorder(up_already=True)
    with shared_environment(recorder, FileLock(tmp_path / "p.lock"), users):  # type: ignore[arg-type]
        assert len(users.read_text().splitlines()) == 2
    assert recorder.calls == ["attach", "close"]
    assert users.read_text().split()[0] == str(parent)  # still in use: not taken down


def test_a_reused_pid_is_not_a_user(tmp_path: Path) -> None:
    parent = os.getppid()
    users = tmp_path / "compose-p.users"
    users.write_text(f"{parent} 1.00\n")  # alive, but started at another time
    recorder = Recorder(up_already=True)
    with shared_environment(recorder, FileLock(tmp_path / "p.lock"), users):  # type: ignore[arg-type]
        pass
    assert recorder.calls == ["up", "down"]
