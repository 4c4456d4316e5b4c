"""What the runs left behind: processes, temp dirs, run dirs, containers, databases.

Every phase runs its pytest processes with ``TMPDIR`` set to a directory of its own,
so everything the kit makes on this machine lands under it and everything that runs
for it carries it in its environment: what is found there after the last run of the
phase has ended is theirs, never another developer's.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

__all__ = ["find_leftovers", "kill_leftover_processes"]

#: What may stay in a phase's TMPDIR: pytest's own basetemp and the (empty) runs root.
EXPECTED = ("pytest-of-",)
RUNS_ROOT_PREFIX = "pytest-integration-kit.runs-"


def _processes_under(root: Path) -> list[tuple[int, str]]:
    """Processes whose environment or command line names ``root``."""
    needle = str(root).encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if needle in environ or needle in cmdline:
            command = cmdline.replace(b"\0", b" ").decode(errors="replace").strip()
            found.append((int(entry.name), command[:160]))
    return found


def _containers(sessions: set[str], pids: set[int]) -> list[str]:
    """Containers labelled with one of our sessions' ids or made by one of our processes."""
    if not (sessions or pids) or shutil.which("docker") is None:
        return []
    try:
        result = subprocess.run(
            [
                "docker",
                "ps",
                "-a",
                "--filter",
                "label=pytest-integration-kit.session",
                "--format",
                '{{.ID}} {{.Label "pytest-integration-kit.session"}} '
                '{{.Label "pytest-integration-kit.owner-pid"}} {{.Names}}',
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return []
    found = []
    for line in result.stdout.splitlines():
        parts = line.split()
        if len(parts) < 3:
            continue
        if parts[1] in sessions or (parts[2].isdigit() and int(parts[2]) in pids):
            found.append(f"container {parts[0]} ({' '.join(parts[3:])}) of session {parts[1]}")
    return found


def sessions_seen(root: Path) -> set[str]:
    """Session ids named by run dirs or server dirs under ``root`` right now."""
    found: set[str] = set()
    for runs in root.glob(f"{RUNS_ROOT_PREFIX}*"):
        with contextlib.suppress(OSError):
            found.update(p.name for p in runs.iterdir() if p.is_dir())
    for workdir in root.glob("pytest-integration-kit-*"):
        found.add(workdir.name.removeprefix("pytest-integration-kit-").split("-")[0])
    return found


def find_leftovers(
    root: Path,
    sessions: set[str],
    *,
    pids: frozenset[int] | set[int] = frozenset(),
    settle: float = 10.0,
) -> list[str]:
    """Everything of ours still there after ``settle`` seconds: one line per item."""
    deadline = time.monotonic() + settle
    while True:
        processes = _processes_under(root)
        if not processes or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    found = [f"process {pid}: {command}" for pid, command in processes]
    for entry in _entries(root):
        if entry.name.startswith(EXPECTED):
            continue
        if entry.name.startswith(RUNS_ROOT_PREFIX) and entry.is_dir():
            found.extend(f"run dir {p}" for p in sorted(entry.iterdir()))
            continue
        found.append(f"temp entry {entry}")
    found.extend(_containers(sessions, set(pids)))
    return found


def _entries(root: Path) -> list[Path]:
    """What the runs put in ``root`` (under its single subdirectory, when it is long)."""
    if not root.is_dir():
        return []
    return sorted(root.iterdir())


def kill_leftover_processes(root: Path) -> None:
    """After the verdict: end what the kit failed to end, so the next phase starts clean."""
    for pid, _ in _processes_under(root):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, 9)


def record_sessions(root: Path, into: Path) -> None:
    """Append the sessions seen under ``root`` to ``into`` (kept across kills)."""
    seen = sorted(sessions_seen(root))
    if seen:
        with open(into, "a") as out:
            out.write(json.dumps(seen) + "\n")
