"""The phases of a chaos run: isolation fuzz, kill -9 at each stage, concurrent sessions.

Each phase works in a ``TMPDIR`` of its own (see :mod:`chaos.leftovers`) and returns a
:class:`PhaseResult`: one row of the final table plus the details behind it.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from chaos.fuzz import generate_module, manifest
from chaos.leftovers import find_leftovers, kill_leftover_processes, sessions_seen
from chaos.project import write_project
from chaos.run import Hang, RunResult, read_events, run_pytest
from chaos.verdict import Failure, Leak, judge

__all__ = ["Context", "PhaseResult", "fuzz_phase", "inner_env"]

#: Where the phases' TMPDIRs go, whatever TMPDIR says: short, as server sockets live there.
SHORT_TMP = Path("/tmp")  # noqa: S108 - a fresh mkdtemp under it, private to the phase

REAP_MODULE = '''\
"""A plain test on both services: its run reaps what dead sessions left."""

from sqlalchemy import text


def test_reap(postgres_session, mysql_session):
    assert postgres_session.execute(text("SELECT 1")).scalar() == 1
    assert mysql_session.execute(text("SELECT 1")).scalar() == 1
'''


@dataclass
class Context:
    """What every phase needs: where to work, the seed, the limits."""

    workdir: Path
    seed: int
    services: tuple[str, ...]
    hang_after: float
    run_timeout: float
    attempts: int = 4
    verbose: bool = False

    def tmp_root(self, name: str, *, length: int = 0) -> Path:
        """A private TMPDIR for one phase, at least ``length`` characters long.

        Short by default; a long one (60) checks that server sockets do not live under
        it (a Unix socket path has about 107 bytes).
        """
        path = Path(tempfile.mkdtemp(prefix=f"pikc{name[:3]}-", dir=SHORT_TMP))
        # Like /tmp itself: servers run as their own user when we are root, and must
        # be able to reach their directories under it.
        path.chmod(0o711)
        if len(str(path)) < length:
            path = path / ("a-long-temporary-directory-name-" * 3)[: length - len(str(path)) - 1]
            path.mkdir(mode=0o711)
            path.chmod(0o711)
        return path

    def remove_tmp(self, path: Path) -> None:
        """Remove a phase's TMPDIR (from its top under /tmp) once it has been judged."""
        top = SHORT_TMP / path.relative_to(SHORT_TMP).parts[0]
        if top.name.startswith("pikc"):
            shutil.rmtree(top, ignore_errors=True)

    def say(self, text: str) -> None:
        print(text, flush=True)


@dataclass
class PhaseResult:
    """One row of the table, and the evidence."""

    name: str
    trials: int = 0
    leaks: list[Leak] = field(default_factory=list)
    hangs: list[Hang] = field(default_factory=list)
    leftovers: list[str] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    reproduce: str = ""

    @property
    def documented(self) -> int:
        return sum(1 for leak in self.leaks if leak.documented)

    @property
    def undocumented(self) -> int:
        return sum(1 for leak in self.leaks if not leak.documented)

    @property
    def ok(self) -> bool:
        return not (self.undocumented or self.hangs or self.leftovers or self.failures)


def inner_env(tmp_root: Path, **extra: str) -> dict[str, str]:
    """The environment of an inner run: ours, minus settings that would override the ini."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("INTEGRATION_", "PYTEST_", "CHAOS_")) and k != "CI"
    }
    env.update({"TMPDIR": str(tmp_root), "PYTHONDONTWRITEBYTECODE": "1", **extra})
    return env


def _note_run(ctx: Context, label: str, result: RunResult) -> None:
    hung = f", {len(result.hangs)} hang(s)" if result.hangs else ""
    ctx.say(f"  {label}: exit {result.returncode} in {result.seconds}s{hung}")
    if ctx.verbose or (result.returncode not in (0, None) and not result.hangs):
        ctx.say("    " + result.tail(6).replace("\n", "\n    "))


def fuzz_phase(  # noqa: PLR0915 - one run, then its rows
    ctx: Context, strategies: list[str], tests: int
) -> list[PhaseResult]:
    """Random tests on every service under every strategy in one run: -n 2, random order.

    Each module carries its strategy as ``@pytest.mark.isolation``, so the strategies
    interleave on the same worker databases as they would in a user's suite. One row
    per strategy and service comes back, and one for what the runs left behind.
    """
    started = _now()
    rng = random.Random(f"{ctx.seed}-fuzz")  # noqa: S311 - a seeded fuzz, not a secret
    modules: dict[str, str] = {}
    plans = []
    per_module = 8
    for strategy in strategies:
        for service in ctx.services:
            short = {"postgres": "pg", "mysql": "my"}[service]
            for index in range((tests + per_module - 1) // per_module):
                name = f"test_{short}_{strategy[:2]}{index}.py"
                count = min(per_module, tests - index * per_module)
                source, module_plans = generate_module(
                    rng,
                    module=name,
                    service=service,
                    strategy=strategy,
                    count=count,
                    profile="full",
                    marked=True,
                )
                modules[name] = source
                plans.extend(module_plans)
    path = ctx.workdir / "fuzz"
    shutil.rmtree(path, ignore_errors=True)
    project = write_project(path, strategy="rollback", modules=modules)
    (path / "manifest.json").write_text(json.dumps(manifest(plans), indent=1))
    tmp = ctx.tmp_root("fuz")
    env = inner_env(tmp)
    remaining = sorted(modules)
    all_tests = {plan.test for plan in plans}
    done: set[str] = set()
    hung: set[str] = set()
    total = PhaseResult(name="fuzz")
    observed: list[str] = []
    base = [
        "-n",
        "2",
        "--max-worker-restart=50",
        "-p",
        "randomly",
        f"--randomly-seed={ctx.seed}",
        "-q",
    ]
    total.reproduce = (
        f"cd {path} && TMPDIR=$(mktemp -d /tmp/pikc-XXXX) CHAOS_LOG_DIR=$PWD/logs/manual "
        f"{sys.executable} -m pytest {' '.join(base)}"
    )
    for attempt in range(ctx.attempts):
        logs = path / "logs" / f"attempt{attempt}"
        run = run_pytest(
            project.path,
            [*base, *remaining],
            logs=logs,
            env=env,
            timeout=ctx.run_timeout,
            hang_after=ctx.hang_after,
            output=path / f"output-{attempt}.txt",
        )
        _note_run(ctx, f"fuzz attempt {attempt} ({len(remaining)} modules/tests)", run)
        events = read_events(logs)
        verdict = judge(events, manifest(plans))
        observed += verdict.observed
        total.leaks.extend(verdict.leaks)
        total.failures.extend(verdict.failures)
        total.hangs.extend(run.hangs)
        done |= {e["test"] for e in events if e.get("ev") == "end"}
        hung |= {h.where for h in run.hangs}
        if run.timed_out:
            total.failures.append(
                Failure(
                    f"<run attempt {attempt}>",
                    "session",
                    f"still running after {ctx.run_timeout:.0f}s (not hung: too slow)",
                )
            )
        elif run.returncode not in (0, 1) and not run.hangs:
            total.failures.append(Failure(f"<run attempt {attempt}>", "session", run.tail(15)))
        remaining = sorted(all_tests - done - hung)
        if not run.stopped or run.timed_out or not remaining:
            break  # the run ended by itself: hung workers were replaced along the way
        ctx.say(f"  restarting without the hung test(s): {len(remaining)} test(s) left")
    if remaining and total.hangs:
        total.notes.append(f"{len(remaining)} test(s) not run: the attempts after hangs ran out")
    sessions = sessions_seen(tmp)
    if total.hangs:
        # The last attempt was interrupted: a plain run must reap what it left.
        (path / "test_reap.py").write_text(REAP_MODULE)
        reap = run_pytest(
            project.path,
            ["-q", "-p", "no:randomly", "test_reap.py"],
            logs=path / "logs" / "reap",
            env=env,
            timeout=ctx.run_timeout,
            hang_after=ctx.hang_after,
            output=path / "output-reap.txt",
        )
        _note_run(ctx, "reaping run", reap)
        if reap.returncode != 0:
            total.failures.append(Failure("<reaping run>", "session", reap.tail(15)))
    total.leftovers = find_leftovers(tmp, sessions)
    kill_leftover_processes(tmp)
    ctx.remove_tmp(tmp)
    by_test = {plan.test: plan for plan in plans}
    rows = []
    for strategy in strategies:
        for service in ctx.services:
            row = PhaseResult(name=f"fuzz {strategy} {service}")

            def mine(test: str, strategy: str = strategy, service: str = service) -> bool:
                plan = by_test.get(test)
                return plan is not None and (plan.strategy, plan.service) == (strategy, service)

            row.trials = sum(1 for test in observed if mine(test))
            row.leaks = [
                leak for leak in total.leaks if (leak.strategy, leak.service) == (strategy, service)
            ]
            row.hangs = [hang for hang in total.hangs if mine(hang.where)]
            row.failures = [failure for failure in total.failures if mine(failure.test)]
            rows.append(row)
    rest = PhaseResult(name="fuzz: whole run", reproduce=total.reproduce, notes=total.notes)
    counted = {id(x) for row in rows for x in (*row.leaks, *row.hangs, *row.failures)}
    rest.leaks = [x for x in total.leaks if id(x) not in counted]
    rest.hangs = [x for x in total.hangs if id(x) not in counted]
    rest.failures = [x for x in total.failures if id(x) not in counted]
    rest.leftovers = total.leftovers
    rest.seconds = round(_now() - started, 1)
    return [*rows, rest]


def _now() -> float:
    import time  # noqa: PLC0415 - tiny helper

    return time.monotonic()
