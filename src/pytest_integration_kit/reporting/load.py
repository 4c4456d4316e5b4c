"""The load blocks of a run: one table line each in the end summary, and their history.

The history is one JSON document (kept by the plugin in pytest's cache directory): per
block, keyed by test node id and block name, the latest figures and the ones before, so
the summary can say how a block changed since the last run that measured it.

.. versionadded:: 0.1
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

__all__ = ["HISTORY_VERSION", "block_key", "load_table", "merge_history"]

HISTORY_VERSION = 1
#: Where the history lives under pytest's cache (``config.cache``).
CACHE_KEY = "pytest_integration_kit/load"


def block_key(entry: Mapping[str, Any]) -> str:
    return f"{entry['test']}::{entry['name']}"


def merge_history(
    stored: object, entries: Iterable[Mapping[str, Any]]
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The new history (this run's blocks as latest, their last figures as previous;
    blocks this run did not measure kept as they were) and, per block key of this run,
    the figures of the last run that measured it."""
    blocks: dict[str, Any] = {}
    if isinstance(stored, dict) and stored.get("version") == HISTORY_VERSION:
        blocks = dict(stored.get("blocks") or {})
    previous: dict[str, dict[str, Any]] = {}
    for entry in entries:
        key = block_key(entry)
        old = blocks.get(key)
        last = old.get("latest") if isinstance(old, dict) else None
        if isinstance(last, dict) and key not in previous:
            previous[key] = last
        blocks[key] = {"latest": dict(entry), "previous": previous.get(key)}
    return {"version": HISTORY_VERSION, "blocks": blocks}, previous


def _change(now: object, before: object) -> str:
    if not isinstance(now, (int, float)) or not isinstance(before, (int, float)):
        return "?"
    if before == 0 or math.isnan(before) or math.isnan(now) or math.isinf(before):
        return "?"
    return f"{(now - before) / before * 100:+.0f}%"


def _ms(value: object) -> str:
    return f"{value:.2f}" if isinstance(value, (int, float)) and not math.isnan(value) else "-"


def load_table(
    entries: Iterable[Mapping[str, Any]],
    previous: Mapping[str, Mapping[str, Any]] | None = None,
    *,
    resources: bool = False,
) -> list[str]:
    """A header and one line per block: test, name, n, concurrency, rps, p50/p95/p99 in
    ms, the budget verdict and the change in rps and p95 since the last run (``new``
    when there was none). ``resources``: each block's server use on an indented line."""
    previous = previous or {}
    rows = []
    for entry in entries:
        before = previous.get(block_key(entry))
        change = (
            f"rps {_change(entry['rps'], before.get('rps'))}, "
            f"p95 {_change(entry['p95_ms'], before.get('p95_ms'))}"
            if before
            else "new"
        )
        errors = f" (errors: {entry['errors']})" if entry.get("errors") else ""
        rows.append(
            (
                [
                    str(entry["test"]),
                    str(entry["name"]),
                    str(entry["n"]),
                    str(entry["concurrency"]),
                    f"{entry['rps']:.1f}",
                    _ms(entry["p50_ms"]),
                    _ms(entry["p95_ms"]),
                    _ms(entry["p99_ms"]),
                    str(entry.get("verdict", "no budget")) + errors,
                    change,
                ],
                entry,
            )
        )
    if not rows:
        return []
    header = [
        "test",
        "name",
        "n",
        "conc",
        "rps",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "budget",
        "vs last run",
    ]
    widths = [max(len(header[i]), *(len(r[0][i]) for r in rows)) for i in range(len(header) - 1)]
    numeric = {2, 3, 4, 5, 6, 7}

    def line(cells: list[str]) -> str:
        out = [
            cell.rjust(widths[i]) if i in numeric else cell.ljust(widths[i])
            for i, cell in enumerate(cells[:-1])
        ]
        return "  ".join([*out, cells[-1]]).rstrip()

    lines = [line(header)]
    for cells, entry in rows:
        lines.append(line(cells))
        if resources:
            lines.append(f"    resources: {_resources(entry.get('resources'))}")
    return lines


def _resources(data: object) -> str:
    if not isinstance(data, dict):
        return "-"
    parts = []
    for usage in data.get("servers") or ():
        figures = []
        if usage.get("cpu_percent") is not None:
            figures.append(f"cpu {usage['cpu_percent']:.0f}%")
        if usage.get("memory_mb") is not None:
            figures.append(f"{usage['memory_mb']:.0f} MB")
        if usage.get("connections") is not None:
            figures.append(f"{usage['connections']} conn")
        if usage.get("note"):
            figures.append(str(usage["note"]))
        parts.append(f"{usage['service']} {usage['backend']}: " + ", ".join(figures))
    return "; ".join(parts) or str(data.get("note") or "-")
