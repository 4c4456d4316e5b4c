# ruff: noqa: S311 - seeded randomness picks cases and delays, never secrets
"""kill -9 at each stage of a run, then a clean run; concurrent sessions side by side.

Stages are hit with markers the generated project writes (``CHAOS_MARKERS``): the
schema callable marks the template build and dawdles, a slow test marks mid-test, the
session fixtures and ``pytest_sessionfinish`` mark teardown; the start is the moment a
server directory appears under the run's ``TMPDIR``. The victim is the pytest process
of a run without xdist, one xdist worker, or the xdist controller.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from typing import TYPE_CHECKING

from chaos.fuzz import Plan, generate_module, manifest
from chaos.leftovers import find_leftovers, kill_leftover_processes, sessions_seen
from chaos.phases import Context, PhaseResult, inner_env
from chaos.project import write_project
from chaos.run import Spec, read_events, run_many, run_pytest
from chaos.verdict import Failure, judge

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["STAGES", "TARGETS", "concurrent_phase", "kill_phase"]

STAGES = ("start", "template", "test", "teardown")
TARGETS = ("pytest", "worker", "controller")
#: Seconds a victim run may take to reach its stage.
STAGE_TIMEOUT = 90.0

SLOW_MODULE = '''\
"""Writes on both services, then dawdles when the driver wants to kill mid-test."""

import os
import time

from sqlalchemy import text

from chaos_eyes import marker


def test_slow(postgres_session, mysql_session):
    postgres_session.execute(text("INSERT INTO note (body) VALUES ('slow')"))
    mysql_session.execute(text("INSERT INTO note (body) VALUES ('slow')"))
    if os.environ.get("CHAOS_STAGE") == "test":
        marker("test")
        time.sleep(6)
'''


def _kill_project(ctx: Context, path: Path, rng: random.Random) -> list[dict[str, object]]:
    modules = {"test_slow.py": SLOW_MODULE}
    plans = []
    for service in ctx.services:
        name = f"test_{service[:2]}.py"
        source, module_plans = generate_module(
            rng, module=name, service=service, strategy="rollback", count=2, profile="single"
        )
        modules[name] = source
        plans.extend(module_plans)
    write_project(path, strategy="rollback", modules=modules)
    return manifest(plans)


def _markers(path: Path) -> list[dict[str, object]]:
    if not path.exists():
        return []
    found = []
    for line in path.read_text().splitlines():
        try:
            found.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return found


def _wait_for_stage(
    stage: str, markers: Path, tmp: Path, process: subprocess.Popen[bytes]
) -> dict[str, object] | None:
    """The marker of ``stage`` (a pseudo one for start), or None if the run ended first."""
    deadline = time.monotonic() + STAGE_TIMEOUT
    while time.monotonic() < deadline and process.poll() is None:
        if stage == "start":
            if any(tmp.glob("pytest-integration-kit-*")):
                return {"stage": "start", "pid": None}
        else:
            wanted = ("teardown", "teardown-controller") if stage == "teardown" else (stage,)
            for found in _markers(markers):
                if found["stage"] in wanted:
                    return found
        time.sleep(0.05)
    return None


def _victim_pid(target: str, seen: dict[str, object], markers: Path, process_pid: int) -> int:
    if target in ("pytest", "controller"):
        return process_pid
    pid = seen.get("pid")
    if isinstance(pid, int) and seen.get("worker", "").__str__().startswith("gw"):
        return pid
    workers = [m for m in _markers(markers) if str(m.get("worker", "")).startswith("gw")]
    return int(workers[0]["pid"]) if workers else process_pid  # type: ignore[call-overload]


def _victim(ctx: Context, project: Path, tmp: Path, *, stage: str, target: str, n: int) -> str:
    """Run until ``stage``, kill -9 the ``target``; a line saying what happened."""
    markers = project / f"markers-{n}.jsonl"
    env = inner_env(
        tmp,
        CHAOS_MARKERS=str(markers),
        CHAOS_STAGE=stage,
        CHAOS_TEMPLATE_SLEEP="2" if stage == "template" else "0",
        CHAOS_LOG_DIR=str(project / "logs" / f"victim-{n}"),
    )
    (project / "logs" / f"victim-{n}").mkdir(parents=True, exist_ok=True)
    args = [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly"]
    if target != "pytest":
        args += ["-n", "2"]
    with open(project / f"output-victim-{n}.txt", "wb") as out:
        process = subprocess.Popen(
            args, cwd=project, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        seen = _wait_for_stage(stage, markers, tmp, process)
        if seen is None:
            _end(process)
            return f"kill {target} at {stage}: stage not reached (exit {process.returncode})"
        if stage == "teardown":
            time.sleep(random.Random(n).uniform(0.0, 0.4))  # somewhere inside the kit's teardown
        pid = _victim_pid(target, seen, markers, process.pid)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return f"kill {target} at {stage}: pid {pid} already gone"
        if target == "worker":
            try:
                process.wait(timeout=STAGE_TIMEOUT)
            except subprocess.TimeoutExpired:
                _end(process)
                return f"kill worker at {stage}: the controller did not finish after the kill"
        else:
            process.wait(timeout=10)
    return f"kill -9 {target} (pid {pid}) at {stage}: done"


def _end(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def _clean_run(
    ctx: Context,
    project: Path,
    tmp: Path,
    *,
    plans: list[dict[str, object]],
    label: str,
    result: PhaseResult,
) -> None:
    logs = project / "logs" / f"clean-{label}"
    run = run_pytest(
        project,
        ["-q", "-n", "2", "-p", "randomly", f"--randomly-seed={ctx.seed}"],
        logs=logs,
        env=inner_env(tmp),
        timeout=ctx.run_timeout,
        hang_after=ctx.hang_after,
        output=project / f"output-clean-{label}.txt",
    )
    ctx.say(f"  clean run after {label}: exit {run.returncode} in {run.seconds}s")
    verdict = judge(read_events(logs), plans)
    result.trials += 1
    result.leaks.extend(verdict.leaks)
    result.hangs.extend(run.hangs)
    result.failures.extend(verdict.failures)
    if run.returncode != 0 and not run.hangs and not verdict.failures:
        result.failures.append(Failure(f"<clean run after {label}>", "session", run.tail(12)))


def kill_phase(ctx: Context, *, bounded: bool) -> list[PhaseResult]:
    """kill -9 of pytest, a worker and the controller at each stage, then clean runs."""
    rng = random.Random(f"{ctx.seed}-kill")
    cases = [(stage, target) for target in TARGETS for stage in STAGES]
    if bounded:
        # One case per stage, the victim chosen by the seed: every stage each run, every
        # (stage, victim) pair over a few seeds.
        cases = [(stage, TARGETS[(ctx.seed + i) % len(TARGETS)]) for i, stage in enumerate(STAGES)]
    results: list[PhaseResult] = []
    project = ctx.workdir / "kill"
    plans = _kill_project(ctx, project, rng)
    # Bounded: the kills share one TMPDIR, each victim run reaping the one before, and
    # one clean run ends the chain. Full: a clean run and a check after every kill.
    groups = [cases] if bounded else [[case] for case in cases]
    for group in groups:
        started = time.monotonic()
        name = "kill -9 " + ", ".join(f"{t}@{s}" for s, t in group)
        result = PhaseResult(
            name=name if len(group) == 1 else f"kill -9 x{len(group)} (one per stage)"
        )
        tmp = ctx.tmp_root("kil")
        sessions: set[str] = set()
        for n, (stage, target) in enumerate(group):
            line = _victim(ctx, project, tmp, stage=stage, target=target, n=len(results) * 10 + n)
            ctx.say(f"  {line}")
            result.notes.append(line)
            sessions |= sessions_seen(tmp)
            result.trials += 1
            if "not reached" in line or "did not finish" in line:
                result.failures.append(Failure(f"<kill {target} at {stage}>", "chaos", line))
        _clean_run(
            ctx,
            project,
            tmp,
            plans=plans,
            label=result.name.removeprefix("kill -9 "),
            result=result,
        )
        sessions |= sessions_seen(tmp)
        result.leftovers = find_leftovers(tmp, sessions)
        kill_leftover_processes(tmp)
        result.seconds = round(time.monotonic() - started, 1)
        results.append(result)
    return results


def concurrent_phase(ctx: Context, sessions: int, *, tests: int) -> PhaseResult:
    """``sessions`` pytest processes at once, -n 2 each, one TMPDIR: all green, nothing left."""
    started = time.monotonic()
    result = PhaseResult(name=f"{sessions} concurrent sessions")
    tmp = ctx.tmp_root("con")
    strategies = ["truncate", "rollback", "clone"]
    specs, recorded = [], []
    for index in range(sessions):
        strategy = strategies[index % len(strategies)]
        rng = random.Random(f"{ctx.seed}-concurrent-{sessions}-{index}")
        modules: dict[str, str] = {}
        plans: list[Plan] = []
        for service in ctx.services:
            name = f"test_{service[:2]}.py"
            source, module_plans = generate_module(
                rng, module=name, service=service, strategy=strategy, count=tests, profile="single"
            )
            modules[name] = source
            plans.extend(module_plans)
        path = ctx.workdir / f"concurrent-{sessions}-{index}"
        shutil.rmtree(path, ignore_errors=True)
        write_project(path, strategy=strategy, modules=modules)
        seed = ctx.seed + index
        specs.append(
            Spec(
                project=path,
                args=["-q", "-n", "2", "-p", "randomly", f"--randomly-seed={seed}"],
                logs=path / "logs" / "run",
                env=inner_env(tmp),
                output=path / "output.txt",
            )
        )
        recorded.append((path.name, strategy, manifest(plans)))
    runs = run_many(specs, timeout=ctx.run_timeout, hang_after=ctx.hang_after)
    for spec, run, (name, strategy, plans_) in zip(specs, runs, recorded, strict=True):
        verdict = judge(read_events(spec.logs), plans_)
        result.trials += verdict.trials
        result.leaks.extend(verdict.leaks)
        result.failures.extend(verdict.failures)
        result.hangs.extend(run.hangs)
        if run.timed_out:
            result.failures.append(
                Failure(f"<session {name}>", "session", f"not done in {ctx.run_timeout:.0f}s")
            )
        elif run.returncode != 0 and not run.hangs and not verdict.failures:
            result.failures.append(
                Failure(f"<session {name} ({strategy})>", "session", run.tail(12))
            )
        ctx.say(f"  {name} ({strategy}): exit {run.returncode} in {run.seconds}s")
    result.leftovers = find_leftovers(tmp, sessions_seen(tmp))
    kill_leftover_processes(tmp)
    result.seconds = round(time.monotonic() - started, 1)
    return result
