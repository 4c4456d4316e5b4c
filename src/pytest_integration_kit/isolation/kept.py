"""Worker databases kept on a kept server (``integration_reuse``), leased per process.

Making a worker database from the template is most of a warm start's wait (a
``CREATE DATABASE … TEMPLATE`` on PostgreSQL, a table-by-table copy on MySQL). On a
server kept for later runs the kit keeps the worker databases too: named after the
template (``pik_keep_<template hash>_<n>``, so another schema never finds them), and
*leased* — a process takes one with a server-side lock that one of its connections
holds for the whole session (``pg_try_advisory_lock`` / ``GET_LOCK``). Two sessions
never share one, however they overlap, and a process that dies gives its lease back
with its connection (no pid files, nothing to reap).

A leased database is cleaned before use with the same one-round-trip routine that
runs after every test (:mod:`~pytest_integration_kit.isolation.tracking`): rows a
crashed run committed are gone and the seed rows are back. Kept databases of another
template (the schema changed) are dropped when a session next leases one; stopping or
removing the kept server (``python -m pytest_integration_kit kept remove``) removes
them with it.
"""

from __future__ import annotations

import itertools
import re
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from pytest_integration_kit.isolation.databases import IsolatedDatabases

__all__ = ["KEPT_PREFIX", "KeptDatabases", "kept_prefix"]

#: Every kept worker database's name starts with this.
KEPT_PREFIX: Final = "pik_keep_"
_LABEL: Final = "pytest-integration-kit kept template={template}"
_MAKING: Final = " (being made)"


def kept_prefix(template: str) -> str:
    """``pik_keep_<16 hex digits of the template's name>_``."""
    return KEPT_PREFIX + template.rsplit("_", 1)[-1][:16] + "_"


def _lock_key(name: str) -> str:
    return "kept:" + name


def _index(name: str) -> int:
    match = re.search(r"_(\d+)$", name)
    return int(match[1]) if match else 0


class KeptDatabases:
    """This process's lease on one kept worker database of one server."""

    def __init__(self, databases: IsolatedDatabases) -> None:
        self.databases = databases
        self._holder: Connection | None = None
        #: The leased database, once :meth:`acquire` ran.
        self.name: str | None = None
        #: True when the leased database already existed (no CREATE DATABASE).
        self.reused = False

    def acquire(self, template: str, holder: Connection | None = None) -> str:
        """Lease a kept database of ``template`` (made when none is free) and clean it.

        ``holder``: the admin connection to hold the lease with (it is this lease's from
        then on, closed when the lease ends or fails); else one is opened.
        """
        admin = self.databases.admin
        if holder is None:
            holder = self.databases.admin_engine.connect()
        try:
            existing = admin.labelled(holder, KEPT_PREFIX)
            prefix = kept_prefix(template)
            self._drop_stale(holder, existing, prefix)
            ready = _LABEL.format(template=template)
            name, reused = None, False
            for candidate in sorted((n for n in existing if n.startswith(prefix)), key=_index):
                if admin.try_lock(holder, _lock_key(candidate)):
                    name, reused = candidate, existing[candidate] == ready
                    break
            if name is None:  # all taken (or none yet): the first free number
                for number in itertools.count():
                    candidate = f"{prefix}{number}"
                    if candidate not in existing and admin.try_lock(holder, _lock_key(candidate)):
                        name = candidate
                        break
            assert name is not None
            if not reused:  # absent, or half-made by a process that died
                self._make(holder, template, name)
        except BaseException:
            holder.close()
            raise
        self._holder, self.name, self.reused = holder, name, reused
        if reused:
            report = self.databases.clean(name)  # what a crashed run committed
            if report.changed:
                self.remake(name)
        return name

    def remake(self, name: str) -> None:
        """Make the leased ``name`` anew from the template (its schema was changed)."""
        assert self._holder is not None
        self.databases.dispose_engines(name)
        self._make(self._holder, self.databases.template(), name)

    def _make(self, holder: Connection, template: str, name: str) -> None:
        admin = self.databases.admin
        label = _LABEL.format(template=template)
        admin.drop(holder, name)
        admin.clone(holder, self.databases.endpoint, template, name, label=label + _MAKING)
        admin.database_defaults(holder, name)
        admin.label(holder, name, label)
        self.databases.created += 1

    def _drop_stale(self, holder: Connection, existing: dict[str, str], prefix: str) -> None:
        """Drop kept databases of other templates that nobody holds."""
        admin = self.databases.admin
        for name in existing:
            if name.startswith(prefix) or not admin.try_lock(holder, _lock_key(name)):
                continue
            try:
                admin.drop(holder, name)
            finally:
                admin.unlock(holder, _lock_key(name))

    def release(self) -> None:
        """End the lease (the database stays, clean, for the next session)."""
        holder, self._holder = self._holder, None
        if holder is not None:
            holder.close()
