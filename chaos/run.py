"""One inner pytest run under a hard timeout, watched for hangs through its event log.

A test that started and has not ended (its teardown included) within ``hang_after``
seconds is a hang: it is named, with the stack faulthandler dumped, and the process
running it is killed — an xdist worker (xdist replaces it and the run goes on), or the
whole run (SIGINT to its process group, SIGKILL after a grace period).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["Hang", "RunResult", "Spec", "read_events", "run_many", "run_pytest", "stop_group"]

#: Seconds between SIGINT and SIGKILL when a run must be stopped.
INTERRUPT_GRACE = 8.0


@dataclass
class Hang:
    """A test (or a stage, when no test was running) that did not finish in time."""

    where: str
    seconds: float
    stack: str = ""


@dataclass
class RunResult:
    """What one inner run did."""

    args: list[str]
    returncode: int | None
    seconds: float
    output: str
    hangs: list[Hang] = field(default_factory=list)
    #: Stopped at the time limit while still making progress: too slow, not hung.
    timed_out: bool = False
    #: We stopped it (a hang outside a worker, or the time limit).
    stopped: bool = False

    def tail(self, lines: int = 25) -> str:
        return "\n".join(self.output.splitlines()[-lines:])


def read_events(logs: Path) -> list[dict[str, Any]]:
    """Every event the generated conftest logged, in time order."""
    events: list[dict[str, Any]] = []
    for path in sorted(logs.glob("events-*.jsonl")):
        for line in path.read_text().splitlines():
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut by kill -9
                continue
    return sorted(events, key=lambda e: float(e.get("t", 0)))


def _open_tests(logs: Path) -> dict[str, tuple[float, int]]:
    """Tests started and not ended: nodeid -> (start time, pid of the process running it)."""
    running: dict[str, tuple[float, int]] = {}
    for path in logs.glob("events-*.jsonl"):
        for line in path.read_text().splitlines():
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            if event.get("ev") == "start":
                running[event["test"]] = (float(event["t"]), int(event["pid"]))
            elif event.get("ev") == "end":
                running.pop(event["test"], None)
    return running


def _stack_for(logs: Path, test: str) -> str:
    """Frames faulthandler dumped for the hung test: the innermost, the kit's, the test's."""
    for path in logs.glob("stacks-*.txt"):
        text = path.read_text(errors="replace")
        at = text.rfind(f"--- {test} started")
        if at < 0:
            continue
        chunk = text[at:].split("\n--- ", 1)[0]
        threads = chunk.split("\n\n")
        main = next((t for t in threads if "/test_" in t), "")
        frames = re.findall(r'File "([^"]+)", line (\d+) in (\S+)', main)
        keep = [
            f"{path_.split('site-packages/')[-1].split('/src/')[-1]}:{line} {name}"
            for i, (path_, line, name) in enumerate(frames)
            if i == 0 or "pytest_integration_kit" in path_ or "/test_" in path_
        ]
        return " <- ".join(keep[:8])
    return ""


def stop_group(process: subprocess.Popen[bytes], grace: float = INTERRUPT_GRACE) -> None:
    """SIGINT the run's process group (pytest tears down), SIGKILL it if that hangs too."""
    for sig, wait in ((signal.SIGINT, grace), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


@dataclass
class Spec:
    """One inner run to start: where, with what, writing its events where."""

    project: Path
    args: list[str]
    logs: Path
    env: dict[str, str]
    output: Path


class _Watched:
    """A started run and what the watcher knows of it."""

    def __init__(self, spec: Spec, hang_after: float) -> None:
        self.spec = spec
        spec.logs.mkdir(parents=True, exist_ok=True)
        env = {**spec.env, "CHAOS_LOG_DIR": str(spec.logs), "CHAOS_HANG_AFTER": str(hang_after)}
        self.out = open(spec.output, "wb")  # noqa: SIM115 - closed in finish()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "pytest", *spec.args],
            cwd=spec.project,
            env=env,
            stdout=self.out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.started = time.monotonic()
        self.hangs: list[Hang] = []
        self.handled: set[str] = set()
        self.timed_out = self.stopped = False

    def check(self, hang_after: float, deadline: float) -> None:
        """Name hung tests and kill their worker; stop the run if that cannot help."""
        logs, now = self.spec.logs, time.time()
        late = {
            test: (now - since, pid)
            for test, (since, pid) in _open_tests(logs).items()
            if now - since > hang_after and test not in self.handled
        }
        for test, (seconds, _) in sorted(late.items()):
            self.hangs.append(Hang(test, round(seconds, 1), _stack_for(logs, test)))
            self.handled.add(test)
        workers = {pid for _, pid in late.values() if pid != self.process.pid}
        if workers and len(workers) == len(late):
            # xdist replaces a dead worker and goes on with the other tests.
            for pid in workers:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            return
        if late or time.monotonic() > deadline:
            quiet = now - _last_event(logs)
            if not late and quiet > hang_after:
                self.hangs.append(Hang(_stage(logs), round(quiet, 1)))
            elif not late:
                self.timed_out = True
            self.stopped = True
            stop_group(self.process)

    def finish(self) -> RunResult:
        self.process.wait()
        self.out.close()
        return RunResult(
            args=self.spec.args,
            returncode=self.process.returncode,
            seconds=round(time.monotonic() - self.started, 1),
            output=self.spec.output.read_text(errors="replace"),
            hangs=self.hangs,
            timed_out=self.timed_out,
            stopped=self.stopped,
        )


def run_many(specs: list[Spec], *, timeout: float, hang_after: float) -> list[RunResult]:
    """Run several inner pytest runs at once, each watched for hangs; their results."""
    deadline = time.monotonic() + timeout
    watched = [_Watched(spec, hang_after) for spec in specs]
    while any(w.process.poll() is None for w in watched):
        time.sleep(0.5)
        for w in watched:
            if w.process.poll() is None:
                w.check(hang_after, deadline)
    return [w.finish() for w in watched]


def run_pytest(
    project: Path,
    args: list[str],
    *,
    logs: Path,
    env: dict[str, str],
    timeout: float,
    hang_after: float,
    output: Path,
) -> RunResult:
    """Run ``python -m pytest args`` in ``project``; interrupt it on a hang or timeout.

    ``logs`` is where the project's conftest writes its events (``CHAOS_LOG_DIR``).
    """
    spec = Spec(project, args, logs, env, output)
    return run_many([spec], timeout=timeout, hang_after=hang_after)[0]


def _last_event(logs: Path) -> float:
    events = read_events(logs)
    return float(events[-1]["t"]) if events else 0.0


def _stage(logs: Path) -> str:
    """Where a run that timed out without a running test was: before or after tests."""
    events = read_events(logs)
    if not any(e.get("ev") == "start" for e in events):
        return "<start-up: no test began>"
    return "<between tests or session teardown>"
