"""The markdown table, and the evidence behind each count."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from chaos.phases import PhaseResult

__all__ = ["details", "table"]

#: Details printed per phase and kind before "and N more".
SHOWN = 6


def table(results: list[PhaseResult], *, seed: int, seconds: float) -> str:
    rows = [
        f"## Chaos suite (seed {seed}, {seconds:.0f} s)",
        "",
        "| phase | trials | leaks documented | leaks undocumented | hangs | leftovers "
        "| failures | s |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    total = [0, 0, 0, 0, 0, 0]
    for r in results:
        counts = [
            r.trials,
            r.documented,
            r.undocumented,
            len(r.hangs),
            len(r.leftovers),
            len(r.failures),
        ]
        total = [a + b for a, b in zip(total, counts, strict=True)]
        mark = "" if r.ok else " ✗"
        rows.append(f"| {r.name}{mark} | " + " | ".join(map(str, counts)) + f" | {r.seconds:.0f} |")
    rows.append("| **total** | " + " | ".join(f"**{n}**" for n in total) + f" | {seconds:.0f} |")
    verdict = "PASS" if all(r.ok for r in results) else "FAIL"
    rows += ["", f"**{verdict}**: fails on any undocumented leak, hang, leftover or failing test."]
    return "\n".join(rows)


def details(results: list[PhaseResult]) -> str:  # noqa: PLR0912 - one section per kind
    out: list[str] = []
    for r in results:
        if r.ok and not r.leaks and not r.notes:
            continue
        out.append(f"### {r.name}")
        for note in r.notes:
            out.append(f"- {note}")
        documented = Counter(
            f"{leak.service} {leak.kind}: {leak.why}" for leak in r.leaks if leak.documented
        )
        for what, n in sorted(documented.items()):
            out.append(f"- documented x{n}: {what}")
        undocumented = [leak for leak in r.leaks if not leak.documented]
        for leak in undocumented[:SHOWN]:
            out.append(
                f"- **undocumented leak** ({leak.service}, {leak.strategy}): {leak.what}; "
                f"left by {leak.blamed}, seen by {leak.seen_by} — {leak.why}"
            )
            if leak.ops:
                out.append(f"  - {leak.blamed} did: " + "; ".join(leak.ops))
        if len(undocumented) > SHOWN:
            out.append(f"- … and {len(undocumented) - SHOWN} more undocumented leak(s)")
        for hang in r.hangs[:SHOWN]:
            out.append(f"- **hang**: {hang.where} still running after {hang.seconds}s")
            if hang.stack:
                out.append(f"  - waiting in (innermost first): {hang.stack}")
        if len(r.hangs) > SHOWN:
            out.append(f"- … and {len(r.hangs) - SHOWN} more hang(s)")
        for item in r.leftovers[:SHOWN]:
            out.append(f"- **leftover**: {item}")
        if len(r.leftovers) > SHOWN:
            out.append(f"- … and {len(r.leftovers) - SHOWN} more leftover(s)")
        for failure in r.failures[:SHOWN]:
            message = " | ".join(line.strip() for line in failure.message.splitlines()[-3:])
            out.append(f"- **failure**: {failure.test} ({failure.when}): {message[:400]}")
        if len(r.failures) > SHOWN:
            out.append(f"- … and {len(r.failures) - SHOWN} more failure(s)")
        if r.reproduce and not r.ok:
            out.append(f"- reproduce: `{r.reproduce}`")
        out.append("")
    return "\n".join(out)
