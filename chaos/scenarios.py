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
from chaos.project import salt_schema, write_project
from chaos.run import Spec, read_events, run_many, run_pytest
from chaos.verdict import Failure, judge

if TYPE_CHECKING:
    from pathlib import Path

    from chaos.backends import Target

__all__ = ["STAGES", "TARGETS", "concurrent_phase", "kill_phase", "soak_phase"]

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


def _kill_project(
    ctx: Context, path: Path, rng: random.Random, backend: Target
) -> list[dict[str, object]]:
    modules = {"test_slow.py": SLOW_MODULE}
    plans = []
    for service in ctx.services:
        name = f"test_{service[:2]}.py"
        source, module_plans = generate_module(
            rng, module=name, service=service, strategy="rollback", count=2, profile="single"
        )
        modules[name] = source
        plans.extend(module_plans)
    shutil.rmtree(path, ignore_errors=True)
    salt = f"{ctx.seed}-{backend.name}-{time.time():.0f}"
    write_project(path, strategy="rollback", modules=modules, backend_ini=backend.ini, salt=salt)
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


def _started(backend: str, tmp: Path, markers: Path, before: set[str]) -> bool:
    """Has the run begun starting its servers (or, on url, probing them)?"""
    if backend == "local":
        return any(tmp.glob("pytest-integration-kit-*"))
    if backend == "docker":
        return bool(set(_container_ids()) - before)
    return any(m["stage"] == "configure" for m in _markers(markers))


def _container_ids() -> list[str]:
    try:
        listed = subprocess.run(
            ["docker", "ps", "-aq", "--filter", "label=pytest-integration-kit.session"],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return []
    return listed.stdout.split()


def _wait_for_stage(
    stage: str, markers: Path, tmp: Path, process: subprocess.Popen[bytes], backend: str
) -> dict[str, object] | None:
    """The marker of ``stage`` (a pseudo one for start), or None if the run ended first."""
    deadline = time.monotonic() + STAGE_TIMEOUT
    before = set(_container_ids()) if backend == "docker" and stage == "start" else set()
    while time.monotonic() < deadline and process.poll() is None:
        if stage == "start":
            if _started(backend, tmp, markers, before):
                if backend == "url":
                    time.sleep(0.5)  # into the probes and the template check
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


def _victim(
    ctx: Context,
    project: Path,
    tmp: Path,
    *,
    stage: str,
    target: str,
    n: int,
    backend: Target,
    pids: set[int],
) -> str:
    """Run until ``stage``, kill -9 the ``target``; a line saying what happened."""
    markers = project / f"markers-{n}.jsonl"
    env = inner_env(
        tmp,
        CHAOS_MARKERS=str(markers),
        CHAOS_STAGE=stage,
        CHAOS_TEMPLATE_SLEEP="2" if stage == "template" else "0",
        CHAOS_LOG_DIR=str(project / "logs" / f"victim-{n}"),
        **backend.env,
    )
    (project / "logs" / f"victim-{n}").mkdir(parents=True, exist_ok=True)
    args = [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly"]
    if target != "pytest":
        args += ["-n", "2"]
    with open(project / f"output-victim-{n}.txt", "wb") as out:
        process = subprocess.Popen(
            args, cwd=project, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        pids.add(process.pid)
        seen = _wait_for_stage(stage, markers, tmp, process, backend.name)
        if seen is None:
            _end(process)
            return f"kill {target} at {stage}: stage not reached (exit {process.returncode})"
        if stage == "teardown":
            time.sleep(random.Random(n).uniform(0.0, 0.4))  # somewhere inside the kit's teardown
        pid = _victim_pid(target, seen, markers, process.pid)
        pids.update(int(str(m["pid"])) for m in _markers(markers) if m.get("pid"))
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
    backend: Target,
) -> None:
    logs = project / "logs" / f"clean-{label}"
    run = run_pytest(
        project,
        ["-q", "-n", "2", "-p", "randomly", f"--randomly-seed={ctx.seed}"],
        logs=logs,
        env=inner_env(tmp, **backend.env),
        timeout=ctx.run_timeout,
        hang_after=ctx.hang_after,
        output=project / f"output-clean-{label.replace(' ', '_')}.txt",
    )
    ctx.say(f"  clean run after {label}: exit {run.returncode} in {run.seconds}s")
    verdict = judge(read_events(logs), plans)
    result.trials += 1
    result.leaks.extend(verdict.leaks)
    result.hangs.extend(run.hangs)
    result.failures.extend(verdict.failures)
    if run.returncode != 0 and not run.hangs and not verdict.failed_reports:
        result.failures.append(Failure(f"<clean run after {label}>", "session", run.tail(12)))


def kill_phase(ctx: Context, *, bounded: bool, backend: Target) -> list[PhaseResult]:
    """kill -9 of pytest, a worker and the controller at each stage, then clean runs."""
    rng = random.Random(f"{ctx.seed}-kill-{backend.name}")
    cases = [(stage, target) for target in TARGETS for stage in STAGES]
    if bounded or backend.name != "local":
        # One case per stage, the victim chosen by the seed: every stage each run, every
        # (stage, victim) pair over a few seeds.
        cases = [(stage, TARGETS[(ctx.seed + i) % len(TARGETS)]) for i, stage in enumerate(STAGES)]
    results: list[PhaseResult] = []
    project = ctx.workdir / f"kill-{backend.name}"
    plans = _kill_project(ctx, project, rng, backend)
    # Bounded: the kills share one TMPDIR, each victim run reaping the one before, and
    # one clean run ends the chain. Full: a clean run and a check after every kill.
    groups = [cases] if bounded else [[case] for case in cases]
    for index, group in enumerate(groups):
        started = time.monotonic()
        if index:  # the clean run before built the template: the next build is a new one
            salt_schema(project, f"{ctx.seed}-{backend.name}-{time.time():.0f}-{index}")
        where = f" ({backend.name})"
        name = "kill -9 " + ", ".join(f"{t}@{s}" for s, t in group) + where
        result = PhaseResult(
            name=name if len(group) == 1 else f"kill -9 x{len(group)} (one per stage){where}"
        )
        tmp = ctx.tmp_root("kil")
        sessions: set[str] = set()
        pids: set[int] = set()
        databases = backend.databases()
        for n, (stage, target) in enumerate(group):
            line = _victim(
                ctx,
                project,
                tmp,
                stage=stage,
                target=target,
                n=len(results) * 10 + n,
                backend=backend,
                pids=pids,
            )
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
            backend=backend,
        )
        sessions |= sessions_seen(tmp)
        result.leftovers = find_leftovers(tmp, sessions, pids=pids)
        result.leftovers += [f"database {d}" for d in sorted(backend.databases() - databases)]
        kill_leftover_processes(tmp)
        ctx.remove_tmp(tmp)
        result.seconds = round(time.monotonic() - started, 1)
        results.append(result)
    return results


def concurrent_phase(
    ctx: Context, sessions: int, *, tests: int, tmp_length: int = 0
) -> PhaseResult:
    """``sessions`` pytest processes at once, -n 2 each, one TMPDIR: all green, nothing left.

    ``tmp_length``: a TMPDIR at least that long (server sockets must not mind).
    """
    started = time.monotonic()
    long = f", {tmp_length}-char TMPDIR" if tmp_length else ""
    result = PhaseResult(name=f"{sessions} concurrent sessions{long}")
    tmp = ctx.tmp_root("con", length=tmp_length)
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
        elif run.returncode != 0 and not run.hangs and not verdict.failed_reports:
            result.failures.append(
                Failure(f"<session {name} ({strategy})>", "session", run.tail(12))
            )
        ctx.say(f"  {name} ({strategy}): exit {run.returncode} in {run.seconds}s")
    result.leftovers = find_leftovers(tmp, sessions_seen(tmp))
    kill_leftover_processes(tmp)
    ctx.remove_tmp(tmp)
    result.seconds = round(time.monotonic() - started, 1)
    return result


SOAK_MODULE = """\
\"\"\"{count} small tests under clone: the pool must not run out of anything.\"\"\"

import os

import pytest
from sqlalchemy import text

pytestmark = pytest.mark.isolation("clone")
CONNECTIONS = {{
    "postgres": "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'",
    "mysql": "SELECT count(*) FROM information_schema.processlist",
}}


@pytest.mark.parametrize("n", range({count}))
def test_clone(n, {service}_session):
    {service}_session.execute(text("INSERT INTO note (body) VALUES ('soak')"))
    {service}_session.commit()
    assert {service}_session.execute(text("SELECT count(*) FROM note")).scalar() == 1
    count = {service}_session.execute(text(CONNECTIONS["{service}"])).scalar()
    with open(os.path.join(os.environ["CHAOS_LOG_DIR"], "connections-{service}.txt"), "a") as out:
        out.write(f"{{n}} {{count}}\\n")
"""

#: Server connections a clone soak may gain between its first and last tests.
CONNECTION_SLACK = 4


def soak_phase(ctx: Context, counts: dict[str, int]) -> PhaseResult:
    """Hundreds of clone tests in one process: connections must not pile up."""
    started = time.monotonic()
    total = sum(counts.values())
    result = PhaseResult(name=f"clone soak ({total} tests, serial)")
    path = ctx.workdir / "soak"
    shutil.rmtree(path, ignore_errors=True)
    modules = {
        f"test_soak_{service[:2]}.py": SOAK_MODULE.format(count=count, service=service)
        for service, count in counts.items()
    }
    write_project(path, strategy="clone", modules=modules)
    tmp = ctx.tmp_root("soa")
    run = run_pytest(
        path,
        ["-q", "-p", "no:randomly", "-x", *modules],
        logs=path / "logs" / "run",
        env=inner_env(tmp),
        timeout=ctx.run_timeout,
        hang_after=ctx.hang_after,
        output=path / "output.txt",
    )
    ctx.say(f"  clone soak: exit {run.returncode} in {run.seconds}s")
    events = read_events(path / "logs" / "run")
    result.trials = sum(1 for e in events if e.get("ev") == "end")
    result.hangs = run.hangs
    soak_verdict = judge(events, [])
    result.failures = soak_verdict.failures
    for service in counts:
        growth = _connection_growth(path / "logs" / "run" / f"connections-{service}.txt")
        if growth is not None:
            result.failures.append(Failure(f"<clone soak {service}>", "session", growth))
    if run.returncode != 0 and not soak_verdict.failed_reports and not run.hangs:
        result.failures.append(Failure("<clone soak>", "session", run.tail(12)))
    result.leftovers = find_leftovers(tmp, sessions_seen(tmp))
    kill_leftover_processes(tmp)
    ctx.remove_tmp(tmp)
    result.seconds = round(time.monotonic() - started, 1)
    return result


def _connection_growth(path: Path) -> str | None:
    """A message when the server's connections grew along the soak, else None."""
    if not path.exists():
        return None
    counts = [int(line.split()[1]) for line in path.read_text().splitlines() if line.strip()]
    if len(counts) < 20:
        return None
    first, last = max(counts[:10]), min(counts[-10:])
    if last - first > CONNECTION_SLACK:
        return (
            f"server connections grew from {first} to {last} over {len(counts)} clone tests "
            "(they must stay flat)"
        )
    return None
