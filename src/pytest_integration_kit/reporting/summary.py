"""The end-of-run report: servers used, decisions ``auto`` made, services that were missing.

Each decision is said once for the whole run (all xdist workers): one line per
unavailable service with the number of tests it cost and the fix, instead of a reason
repeated on every skipped test.

Plain classes, not dataclasses: every run makes a report at start-up, and a dataclass
costs its module's import a generated ``__init__``, ``__repr__`` and ``__eq__`` each.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from pytest_integration_kit.services import spec_for

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from pytest_integration_kit.lifecycle.records import ServerRecord

__all__ = [
    "RunReport",
    "UnavailableTally",
    "auto_decisions",
    "plural",
    "server_lines",
    "stopped_line",
]


def plural(count: int, word: str) -> str:
    return f"{count} {word}" + ("" if count == 1 else "s")


class _Entry:
    """One service and outcome: why, the fix, and how many tests it cost."""

    def __init__(self, *, title: str, action: str, fix: str, reasons: tuple[str, ...]) -> None:
        self.title = title
        self.action = action
        self.fix = fix
        self.reasons = reasons
        self.count = 0


class UnavailableTally:
    """Tests skipped or errored because a service was unavailable, per service."""

    def __init__(self) -> None:
        self.entries: dict[tuple[str, str], _Entry] = {}

    def add(self, data: Mapping[str, Any]) -> None:
        """Count one test; ``data`` is :meth:`Unavailable.to_json` from its report."""
        key = (str(data.get("service", "?")), str(data.get("action", "skip")))
        entry = self.entries.get(key)
        if entry is None:
            entry = _Entry(
                title=str(data.get("title", key[0])),
                action=key[1],
                fix=str(data.get("fix", "")),
                reasons=tuple(str(r) for r in data.get("reasons", ())),
            )
            self.entries[key] = entry
        entry.count += 1

    def headlines(self) -> list[str]:
        """Per service and outcome: ``2 tests skipped: PostgreSQL unavailable — fix: …``."""
        done = {"skip": "skipped", "error": "errored"}
        return [
            f"{plural(e.count, 'test')} {done.get(e.action, e.action)}: {e.title} unavailable"
            + (f" — fix: {e.fix}" if e.fix else "")
            for e in self.entries.values()
        ]

    def lines(self) -> list[str]:
        """The headlines, each followed by why each backend could not run the service."""
        out: list[str] = []
        for headline, entry in zip(self.headlines(), self.entries.values(), strict=True):
            out.append(headline)
            out += [f"  {reason}" for reason in entry.reasons]
        return out

    def warnings(self) -> list[str]:
        """One warning per service and outcome (the summary lists the reasons)."""
        why = " (reasons in the integration services summary)"
        return [line + why for line in self.headlines()]


def auto_decisions(records: Iterable[ServerRecord]) -> list[str]:
    """Why ``auto`` did not use its first choice, per server: ``postgres: auto chose local
    — docker could not: the Docker engine did not answer …``."""
    lines: list[str] = []
    for record in records:
        if not record.tried or record.endpoint is None:
            continue
        why = "; ".join(
            f"{name} could not: {reason.strip()}"
            for name, _, reason in (t.partition(": ") for t in record.tried)
        )
        lines.append(
            f"{record.service}: auto chose {record.backend} — {why} (set integration_backend="
            f"{record.backend} or integration_{record.service}_backend to choose it and "
            "silence this)"
        )
    return lines


def server_lines(records: Iterable[ServerRecord]) -> list[str]:
    """Per server of the run: backend, version, address, start time, reuse hit or not.

    Columns as wide as their widest cell (at least the usual widths), so a long version
    string does not push one row's address out of line."""
    rows: list[tuple[str, str, str, str, str]] = []
    for record in records:
        endpoint = record.endpoint_object()
        title, version = spec_for(endpoint.service).title, endpoint.version
        if "mariadb" in version.lower():
            # "10.11.19-MariaDB-0+deb12u1": the title says MariaDB, the rest is the build.
            title, version = "MariaDB", version.split("-", 1)[0]
        if record.reused:
            how = f"reused (kept), attached in {record.seconds_to_ready:.2f} s"
        else:
            how = f"ready in {record.seconds_to_ready:.2f} s" + (", kept" if record.kept else "")
            if record.warm:
                how += " (warm data dir)"
        by = f" [{record.started_by}]" if record.started_by != "main" else ""
        rows.append(
            (endpoint.service, record.backend, f"{title} {version}", endpoint.address, how + by)
        )
    widths = [max([width, *(len(row[i]) for row in rows)]) for i, width in enumerate(_WIDTHS)]
    return [
        " ".join(cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True))
        + " "
        + row[-1]
        for row in rows
    ]


#: The server lines' usual column widths: service, backend, version, address.
_WIDTHS: Final = (9, 7, 28, 22)


def stopped_line(count: int, kept: int, seconds: float) -> str | None:
    """``stopped 3 servers in 1.2 s`` (and how many were kept running), or None."""
    if not count and not kept:
        return None
    parts = []
    if count:
        parts.append(f"stopped {plural(count, 'server')} in {seconds:.1f} s")
    if kept:
        parts.append(f"{kept} kept running for the next run")
    return "; ".join(parts)


class RunReport:
    """What the end summary says about a run, gathered as it goes."""

    def __init__(self) -> None:
        self.tally = UnavailableTally()
        #: The servers of the run, read before they are stopped.
        self.records: list[ServerRecord] = []
        self.reaped = ""
        #: What the lifecycle noted for the user (e.g. where run directories went).
        self.notes: list[str] = []
        self.stopped: str | None = None
        #: Decision warnings turned into errors by the warning filters (``-W error``).
        self.warning_errors: list[str] = []

    def warnings(self) -> list[str]:
        """Every decision to say once as an IntegrationKitWarning."""
        return auto_decisions(self.records) + self.tally.warnings()

    def lines(self) -> list[str]:
        """The ``integration services`` section."""
        lines = server_lines(self.records)
        lines += auto_decisions(self.records)
        lines += self.tally.lines()
        if self.reaped:
            lines.append(f"reaped from dead sessions: {self.reaped}")
        if self.stopped:
            lines.append(self.stopped)
        lines += [f"error (IntegrationKitWarning made an error): {w}" for w in self.warning_errors]
        return lines
