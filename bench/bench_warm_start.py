"""Warm start: from launching pytest to the first test body, with ``--integration-reuse``.

A kept PostgreSQL (local, and docker when the offline image is there) and a one-test
project using ``postgres_session``, against bare pytest running a one-test project in
the same round, and bare pytest whose test imports what the suite's do (SQLAlchemy's
ORM, psycopg); rounds interleaved, medians. Target (issue 11): warm start ≤ bare
pytest + 150 ms. The first round (untimed) keeps the server and its databases.

    python bench/bench_warm_start.py [--reps 7]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "anchors"))
import harness as anchors
import suites

IMAGE = "pytest-integration-kit/postgres:15"


def _first(suite: suites.Suite, *args: str) -> float:
    result = anchors.run_suite(suite, *args)
    if result.error or result.first is None:
        raise SystemExit(f"the run failed:\n{result.error}")
    return result.first


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=7)
    options = parser.parse_args()
    cache = Path(tempfile.mkdtemp(prefix="pik-bench-warm-"))
    anchors.CACHE_DIR = cache
    docker = (
        shutil.which("docker") is not None
        and subprocess.run(
            ["docker", "image", "inspect", IMAGE], capture_output=True, check=False
        ).returncode
        == 0
    )
    backends = {"local": suites.ours_pg(1)}
    if docker:
        backends["docker"] = suites.ours_pg(1, IMAGE)
    bare = suites.bare(1)
    # What the suite's own imports cost (its models and test use SQLAlchemy, psycopg).
    imports = suites.bare_with_imports()
    try:
        for suite in backends.values():
            _first(suite, "--integration-reuse")  # keeps the server (and its databases)
        samples: dict[str, list[float]] = {n: [] for n in [*backends, "bare", "bare + imports"]}
        for _ in range(options.reps):
            samples["bare"].append(_first(bare))
            samples["bare + imports"].append(_first(imports))
            for name, suite in backends.items():
                samples[name].append(_first(suite, "--integration-reuse"))
        floor = statistics.median(samples["bare"])
        print("| warm start to first test | median (s) | minus bare (ms) | x bare | n |")
        print("|---|---|---|---|---|")
        for name, values in samples.items():
            median = statistics.median(values)
            print(
                f"| {name} | {median:.3f} | {(median - floor) * 1000:.0f} | "
                f"{median / floor:.2f} | {len(values)} |"
            )
    finally:
        subprocess.run(
            [sys.executable, "-m", "pytest_integration_kit", "kept", "remove"],
            env={**os.environ, "INTEGRATION_CACHE_DIR": str(cache)},
            capture_output=True,
            check=False,
            timeout=300,
        )
        shutil.rmtree(cache, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
