"""``python -m chaos [--budget SECONDS] [--seed N]``: run the chaos suite, print the table.

Exit status 0 only when no phase found an undocumented leak, a hang, a leftover or a
failing test. ``--budget`` (or ``CHAOS_BUDGET``) bounds the whole run: fewer tests per
fuzz run and a seeded selection of the kill scenarios (CI runs ``--budget 270``).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

from chaos.backends import target
from chaos.phases import Context, PhaseResult, fuzz_phase
from chaos.report import details, table
from chaos.verdict import Failure

STRATEGIES = ("rollback", "truncate", "clone")


def _arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m chaos", description=__doc__)
    parser.add_argument(
        "--budget",
        type=float,
        default=float(os.environ.get("CHAOS_BUDGET", "0")) or None,
        help="bound the run to about this many seconds (env CHAOS_BUDGET); default: full run",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=int(os.environ.get("CHAOS_SEED", "0")) or None,
        help="random seed (env CHAOS_SEED); default: a new one, printed",
    )
    parser.add_argument(
        "--phases",
        default=None,
        help="comma-separated subset of fuzz, kill, concurrent, soak (default: all)",
    )
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    parser.add_argument("--services", default="postgres,mysql")
    parser.add_argument(
        "--backends",
        default=None,
        help="backends for the kill phase (local,docker,url); default: local and url, "
        "plus docker in the full run; one that cannot run here is said and left out",
    )
    parser.add_argument(
        "--tests", type=int, default=None, help="fuzz tests per service and strategy"
    )
    parser.add_argument(
        "--hang-after", type=float, default=15.0, help="seconds a test may take (teardown included)"
    )
    parser.add_argument(
        "--workdir", type=Path, default=None, help="keep the generated projects here"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the results as JSON")
    parser.add_argument("-v", "--verbose", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:  # noqa: PLR0915 - the phases in order
    args = _arguments(sys.argv[1:] if argv is None else argv)
    seed = args.seed or random.SystemRandom().randint(1, 10**6)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix=f"pik-chaos-{seed}-"))
    workdir.mkdir(parents=True, exist_ok=True)
    default_phases = "fuzz,kill,concurrent,soak"
    phases = [p.strip() for p in (args.phases or default_phases).split(",") if p.strip()]
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    services = tuple(s.strip() for s in args.services.split(",") if s.strip())
    bounded = args.budget is not None
    backends = (args.backends or ("local,url" if bounded else "local,docker,url")).split(",")
    tests = args.tests or (6 if bounded else 40)
    ctx = Context(
        workdir=workdir,
        seed=seed,
        services=services,
        hang_after=args.hang_after,
        run_timeout=(max(120.0, args.budget / 2) if bounded else 900.0),
        attempts=2 if bounded else 4,
    )
    started = time.monotonic()
    ctx.say(
        f"chaos: seed {seed}, {f'budget {args.budget:.0f}s' if bounded else 'full run'}, "
        f"projects under {workdir}"
    )
    results: list[PhaseResult] = []

    def spent(phase: str) -> bool:
        """Past the budget: the phase is not run, and that fails the run (never silent)."""
        if bounded and time.monotonic() - started > args.budget:
            skipped = PhaseResult(name=f"{phase} (not run)")
            skipped.failures.append(Failure(f"<{phase}>", "chaos", "the budget was spent"))
            results.append(skipped)
            return True
        return False

    if "fuzz" in phases:
        ctx.say(
            f"fuzz: {tests} tests per strategy and service ({', '.join(strategies)}; "
            f"{', '.join(services)}), one run, -n 2, random order"
        )
        results.extend(fuzz_phase(ctx, strategies, tests))
    if "kill" in phases and not spent("kill"):
        from chaos.scenarios import kill_phase  # noqa: PLC0415 - phases load what they use

        for name in backends:
            backend = target(name, services)
            if backend.missing:
                ctx.say(f"kill: {name} backend not run: {backend.missing}")
                if args.backends or os.environ.get("CI"):  # asked for, or CI: strict
                    skipped = PhaseResult(name=f"kill ({name}) (not run)")
                    skipped.failures.append(Failure(f"<{name}>", "chaos", backend.missing))
                    results.append(skipped)
                continue
            if not spent(f"kill ({name})"):
                ctx.say(f"kill: {name} backend")
                results.extend(kill_phase(ctx, bounded=bounded, backend=backend))
    if "concurrent" in phases:
        from chaos.scenarios import concurrent_phase  # noqa: PLC0415

        for sessions in (2, 3):
            if not spent(f"{sessions} concurrent sessions"):
                ctx.say(f"concurrent: {sessions} sessions")
                # The three share a 60-character TMPDIR: sockets must not live under it.
                length = 60 if sessions == 3 else 0
                results.append(
                    concurrent_phase(ctx, sessions, tests=4 if bounded else 16, tmp_length=length)
                )
    if "soak" in phases and not spent("clone soak"):
        from chaos.scenarios import soak_phase  # noqa: PLC0415

        ctx.say("soak: clone, one process")
        # Bounded: too few tests to run out, enough to see connections pile up.
        counts = {"postgres": 300, "mysql": 100} if not bounded else {"postgres": 40, "mysql": 20}
        results.append(soak_phase(ctx, {s: n for s, n in counts.items() if s in services}))
    elapsed = time.monotonic() - started
    print()
    print(table(results, seed=seed, seconds=elapsed))
    print()
    print(details(results))
    if args.json:
        args.json.write_text(
            json.dumps([r.__dict__ for r in results], default=lambda o: o.__dict__, indent=1)
        )
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
