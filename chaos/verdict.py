"""From what the tests saw to leaks, documented or not.

Each process logs, per service, what every test saw of its database before doing
anything. The template's state is known (:data:`chaos.project.SEED_ROWS`); what a test
sees beyond it and beyond what the previous test on the same process already saw is a
*new* leak, blamed on that previous test (a schema change is blamed on the test whose
name it carries). A leak is *documented* when docs/isolation.md says the strategy does
not undo it:

- sequences and AUTO_INCREMENT counters are never reset;
- outside ``clone``, tables and columns a test created through a connection that
  commits (DDL in tests: "use clone"; on MySQL DDL always commits);
- a test whose committed ``ALTER TABLE`` changed a template table fails at teardown,
  named (the worker database is rebuilt from the template).

Under ``rollback``, rows committed through a connection that is not the kit's are
emptied too, and the test gets an ``IntegrationKitWarning`` naming the tables: a
missing warning is a failure (a documented limit hit silently).

Anything else is undocumented: a defect.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from chaos.project import SEED_ROWS, TEMPLATE_TABLES

__all__ = ["Failure", "Leak", "Verdict", "judge"]

#: Counters right after the template was built (PostgreSQL last_value, MySQL next id).
TEMPLATE_COUNTERS: dict[str, dict[str, int | None]] = {
    "postgres": {"chaos_seq": 1, "parent_autoinc": 2},
    "mysql": {"chaos_seq": None, "parent_autoinc": 3},
}


@dataclass
class Leak:
    """Something the next test saw that the template does not have."""

    service: str
    strategy: str
    kind: str  # rows | table | column | counter
    what: str
    blamed: str
    seen_by: str
    documented: bool
    why: str
    ops: list[str] = field(default_factory=list)


@dataclass
class Failure:
    test: str
    when: str
    message: str


@dataclass
class Verdict:
    trials: int = 0
    #: Failed test reports, documented ones included: they explain a run's exit status.
    failed_reports: int = 0
    observed: list[str] = field(default_factory=list)
    leaks: list[Leak] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)

    @property
    def documented(self) -> list[Leak]:
        return [leak for leak in self.leaks if leak.documented]

    @property
    def undocumented(self) -> list[Leak]:
        return [leak for leak in self.leaks if not leak.documented]


def _rows(state: dict[str, Any], table: str) -> set[tuple[str, ...]]:
    return {tuple(row) for row in state["rows"].get(table, [])}


def _deviation(service: str, state: dict[str, Any]) -> dict[tuple[str, ...], Any]:
    """What differs from the template, keyed so that two observations compare."""
    found: dict[tuple[str, ...], Any] = {}
    for table in TEMPLATE_TABLES:
        if table not in state["tables"]:
            found[("table-missing", table)] = True
            continue
        seed = {tuple(row) for row in SEED_ROWS[table]}
        rows = _rows(state, table)
        for row in rows - seed:
            extra = ("row-extra", table, *row)
            found[extra] = True
        for row in seed - rows:
            missing = ("row-missing", table, *row)
            found[missing] = True
        for column in set(state["columns"].get(table, [])) - set(TEMPLATE_TABLES[table]):
            found[("column", table, column)] = True
    for table in set(state["tables"]) - set(TEMPLATE_TABLES):
        found[("table", table)] = True
    for name, value in state["counters"].items():
        if value != TEMPLATE_COUNTERS[service][name]:
            found[("counter", name)] = True  # counted once per process, not per value
    return found


def _plan_for_ddl(name: str, plans: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """The plan whose DDL created ``name`` (extra_<ident>_<n> or x_<ident>_<n>)."""
    match = re.match(r"(?:extra|x)_(.+)_\d+$", name)
    if match is None:
        return None
    for plan in plans.values():
        ident = re.sub(r"[^a-z0-9]", "", plan["test"].replace(".py::test_", "t"))
        if ident == match.group(1):
            return plan
    return None


def _classify(
    key: tuple[str, ...], plan: dict[str, Any] | None, strategy: str, service: str
) -> tuple[bool, str]:
    kind = key[0]
    if kind == "counter":
        return True, "sequences and AUTO_INCREMENT counters are not reset (documented)"
    if strategy == "clone":
        return False, "clone gives every test a fresh database from the template"
    if plan is None:
        return False, "no test of this run explains it"
    if kind in ("table", "column"):
        name = key[1] if kind == "table" else key[2]
        paths = [
            path for path, _, target in plan["ddl"] if name.endswith(target) or target == key[1]
        ]
        committed = [
            p for p in paths if p != "session" or service == "mysql" or strategy != "rollback"
        ]
        if committed:
            return True, f"DDL through {committed[0]} outside clone (documented: use clone)"
        return False, "DDL through the rolled-back session survived"
    return False, f"{strategy} should have undone it"


def _describe(key: tuple[str, ...], value: Any) -> str:
    kind = key[0]
    if kind == "row-extra":
        return f"{key[1]}: extra row {list(key[2:])}"
    if kind == "row-missing":
        return f"{key[1]}: seed row {list(key[2:])} missing or changed"
    if kind == "column":
        return f"{key[1]}: extra column {key[2]}"
    if kind == "table":
        return f"extra table {key[1]}"
    if kind == "table-missing":
        return f"template table {key[1]} missing"
    return f"counter {key[1]} advanced"


def judge(events: list[dict[str, Any]], plans: list[dict[str, Any]]) -> Verdict:  # noqa: PLR0912 - one pass over the events
    """Trials, leaks (classified) and failures of one run's events."""
    by_test = {plan["test"]: plan for plan in plans}
    verdict = Verdict()
    warned: dict[str, list[str]] = {}
    ended: set[str] = set()
    for event in events:
        if event.get("ev") == "warning" and event.get("category") == "IntegrationKitWarning":
            warned.setdefault(event["test"], []).append(event["message"])
        elif event.get("ev") == "end":
            ended.add(event["test"])
    previous: dict[tuple[int, str, str], tuple[str, dict[tuple[str, ...], Any]]] = {}
    for event in events:
        if event.get("ev") == "report":
            if event["outcome"] == "failed" or (
                event["outcome"] == "skipped" and not event["xfail"]
            ):
                verdict.failed_reports += 1
                schema = _schema_change_failure(event, plans)
                if schema is not None:
                    verdict.leaks.append(schema)
                else:
                    verdict.failures.append(
                        Failure(event["test"], event["when"], event.get("message", ""))
                    )
            continue
        if event.get("ev") != "obs":
            continue
        final = event["test"].startswith("<")
        verdict.trials += 0 if final else 1
        if not final:
            verdict.observed.append(event["test"])
        service = event["service"]
        # A clone is a fresh database: it follows the clones before it, not the worker's.
        kind = "clone" if event.get("strategy") == "clone" else "worker"
        lineage = (int(event["pid"]), service, kind)
        deviation = _deviation(service, event["state"])
        last_test, last_deviation = previous.get(lineage, ("<before the first test>", {}))
        previous[lineage] = (event["test"], deviation)
        new = {k: v for k, v in deviation.items() if last_deviation.get(k) != v}
        if not new:
            continue
        for key, value in sorted(new.items(), key=lambda kv: json.dumps(kv[0])):
            blamed = last_test
            if key[0] in ("table", "column"):
                maker = _plan_for_ddl(key[-1], by_test)
                blamed = maker["test"] if maker else blamed
            plan = by_test.get(blamed)
            strategy = plan["strategy"] if plan else _strategy_of(by_test, event["test"])
            documented, why = _classify(key, plan, strategy, service)
            verdict.leaks.append(
                Leak(
                    service=service,
                    strategy=strategy,
                    kind=key[0],
                    what=_describe(key, value),
                    blamed=blamed,
                    seen_by=event["test"],
                    documented=documented,
                    why=why,
                    ops=list(plan["ops"]) if plan else [],
                )
            )
    failed = {f.test for f in verdict.failures}
    for plan in plans:
        test = plan["test"]
        if plan["strategy"] != "rollback" or test not in ended or test in failed:
            continue
        silent = [t for t in sorted(set(plan["writes_own"])) if not _named(t, warned.get(test, []))]
        if silent:
            verdict.failures.append(
                Failure(
                    test,
                    "teardown",
                    f"committed to {', '.join(silent)} through an engine of its own under "
                    "rollback, and no IntegrationKitWarning named the table(s): a documented "
                    "limit hit silently",
                )
            )
    return verdict


def _named(table: str, messages: list[str]) -> bool:
    return any(re.search(rf"\b{table}\b", message) for message in messages)


#: How the kit names a test whose committed ALTER TABLE changed a template table.
SCHEMA_CHANGE = "can undo a schema change"


def _schema_change_failure(event: dict[str, Any], plans: list[dict[str, Any]]) -> Leak | None:
    """The documented teardown failure after a committed ALTER TABLE, as a leak; or None."""
    message = str(event.get("message", ""))
    if event.get("when") != "teardown" or SCHEMA_CHANGE not in message:
        return None
    plan = next((p for p in plans if p["test"] == event["test"]), None)
    service = plan["service"] if plan else "?"
    altered = any(
        kind == "column" and p["strategy"] != "clone" and p["service"] == service
        for p in plans
        for _, kind, _ in p["ddl"]
    )
    return Leak(
        service=service,
        strategy=plan["strategy"] if plan else "?",
        kind="schema change",
        what=message.splitlines()[-1][:300] if message else "",
        blamed=event["test"],
        seen_by=event["test"],
        documented=altered,
        why=(
            "a committed ALTER TABLE fails its test at teardown, named (documented)"
            if altered
            else "a schema-change failure with no ALTER TABLE in the run"
        ),
        ops=list(plan["ops"]) if plan else [],
    )


def _strategy_of(plans: dict[str, dict[str, Any]], test: str) -> str:
    plan = plans.get(test)
    if plan is not None:
        return str(plan["strategy"])
    return next((str(p["strategy"]) for p in plans.values()), "?")
