"""Side by side with the peers: the same tiny suites through each tool, interleaved.

    nox -s bench-anchors [-- --reps 3 --only "per test" --only "warm start"]

Peers, each in its documented, idiomatic setup with its own default server settings:
pytest-postgresql (+ pytest-redis), pytest-databases, pytest-mock-resources, and
testcontainers with SQLAlchemy's join-an-external-transaction recipe written by hand.
Every suite runs in a fresh directory with plugin autoloading off and only its own
plugin loaded, so the tools never see each other. Repetitions are interleaved (every
case and tool once, then again), and the table shows medians, as ratios to ours and to
the floor of the case, because this machine is shared: compare within one run only.
A second table checks issue 11's targets against those medians (``targets.py``).

The peers want official image names (``postgres:18``, ``redis:latest``…) and cannot
pull them here: those names are tagged onto the offline test images for the duration
of the run and untagged after. pytest-postgresql and pytest-redis start servers as the
current user and PostgreSQL refuses root: they run as the ``postgres`` user.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cases
import harness
from harness import floor_servers, run_suite  # noqa: F401 - the other benchmarks' entry points
from targets import render_targets


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        help="run the cases whose title contains this (repeatable)",
    )
    options = parser.parse_args()
    # Stopped with SIGTERM (kill, a CI step's timeout), the run still stops its floor
    # servers and kept servers and untags the peers' image names on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    docker = subprocess.run(["docker", "info"], capture_output=True, check=False).returncode == 0
    samples: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    started = time.time()
    with contextlib.ExitStack() as stack:
        if docker:
            stack.enter_context(harness.peer_image_names())
        floors = {"local": stack.enter_context(floor_servers("local"))}
        if docker:
            floors["docker"] = stack.enter_context(floor_servers("docker"))
        chosen = {
            k: v
            for k, v in cases.build_cases(floors, docker).items()
            if not options.only or any(part in k for part in options.only)
        }
        try:
            # One untimed round primes what every tool caches by default (warm data
            # dirs, templates, kept servers for the warm cases): repetitions are alike.
            for title, tools in chosen.items():
                for tool, measure in tools.items():
                    cases.guarded(title, tool, measure)
            print(f"priming round done at {time.time() - started:.0f} s", file=sys.stderr)
            for rep in range(options.reps):
                for title, tools in chosen.items():
                    for tool, measure in tools.items():
                        value = cases.guarded(title, tool, measure)
                        if value is not None:
                            samples[title][tool].append(value)
                print(
                    f"repetition {rep + 1}/{options.reps} done at {time.time() - started:.0f} s",
                    file=sys.stderr,
                )
        finally:
            harness.kept_remove()
            if docker:
                with contextlib.suppress(FileNotFoundError):  # outside its environment
                    subprocess.run(["pmr", "--stop", "postgres"], capture_output=True, check=False)
    medians = {
        title: {tool: statistics.median(v) for tool, v in tools.items() if v}
        for title, tools in samples.items()
    }
    print(render(samples))
    if cases.CONTAINERS:
        started_by = ", ".join(f"{tool} {n}" for tool, n in cases.CONTAINERS.items())
        print(f"\nContainers started by one -n 2 run: {started_by}.")
    print(f"\nTargets (issue 11), from the medians above:\n\n{render_targets(medians)}")
    print(f"\n{options.reps} repetitions after a priming round, {time.time() - started:.0f} s.")
    for key, error in cases.ERRORS.items():
        print(f"\n<details><summary>failed: {key}</summary>\n\n```\n{error}\n```\n</details>")
    return 0


def render(samples: dict[str, dict[str, list[float]]]) -> str:
    """One markdown table: case, tool, median, x ours, x the case's floor, n."""
    lines = ["| case | tool | median | x ours | x floor | n |", "|---|---|---|---|---|---|"]
    for title, tools in samples.items():
        scale = {"(ms)": 1e3, "(µs)": 1e6}.get(title[-4:], 1.0)
        medians = {tool: statistics.median(v) for tool, v in tools.items() if v}
        ours = medians.get("ours")
        floor = next((m for t, m in medians.items() if t.startswith("floor")), None)
        for tool, median in medians.items():
            x_ours = f"{median / ours:.2f}" if ours else "—"
            x_floor = f"{median / floor:.2f}" if floor else "—"
            lines.append(
                f"| {title} | {tool} | {median * scale:.3g} | {x_ours} | {x_floor} | "
                f"{len(tools[tool])} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
