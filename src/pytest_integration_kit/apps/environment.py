"""The application's environment: ``integration_env`` rendered for this worker, set and undone.

An :class:`AppEnvironment` holds the parsed templates and the endpoint of each named
service's *isolated database* (this worker's database, or its Redis db index). It
renders the variables, sets them in ``os.environ`` (remembering what was there) and
renders them again pointing one server at another database — the template, while
its migrations run.

.. versionadded:: 0.1
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from pytest_integration_kit.services.templates import services_named

if TYPE_CHECKING:
    from collections.abc import Mapping, MutableMapping, Sequence

    from pytest_integration_kit.services.endpoint import Endpoint
    from pytest_integration_kit.services.templates import EnvTemplate

__all__ = ["AppEnvironment"]


class AppEnvironment:
    """``integration_env`` for one process: what to set, and how to take it back."""

    def __init__(self, templates: Sequence[EnvTemplate], endpoints: Mapping[str, Endpoint]) -> None:
        missing = [s for s in services_named(templates) if s not in endpoints]
        if missing:
            raise ValueError(f"no endpoint for {', '.join(missing)}")
        self.templates = tuple(templates)
        self.endpoints = dict(endpoints)
        self._previous: dict[str, str | None] | None = None

    @property
    def services(self) -> tuple[str, ...]:
        return services_named(self.templates)

    def values(self, endpoints: Mapping[str, Endpoint] | None = None) -> dict[str, str]:
        """Every variable, rendered (from ``endpoints`` instead where given)."""
        chosen = {**self.endpoints, **(endpoints or {})}
        return {template.name: template.render(chosen) for template in self.templates}

    def for_database(self, host: str | None, port: int | None, database: str) -> dict[str, str]:
        """The variables with the server at ``host:port`` pointing at ``database`` instead.

        A template database is built under the same variables the tests see, only
        naming the template: a stock alembic ``env.py`` that reads the application's
        settings then migrates the template, not the worker's database.
        """
        moved = {
            service: endpoint.with_database(database)
            for service, endpoint in self.endpoints.items()
            if endpoint.host == host and endpoint.port == port
        }
        return self.values(moved)

    def apply(self, environ: MutableMapping[str, str] | None = None) -> dict[str, str]:
        """Set the variables (in ``os.environ`` by default); returns them."""
        target = os.environ if environ is None else environ
        values = self.values()
        if self._previous is None:
            self._previous = {name: target.get(name) for name in values}
        target.update(values)
        return values

    def restore(self, environ: MutableMapping[str, str] | None = None) -> None:
        """Put back what :meth:`apply` replaced (unset what was not set)."""
        target = os.environ if environ is None else environ
        previous, self._previous = self._previous, None
        for name, value in (previous or {}).items():
            if value is None:
                target.pop(name, None)
            else:
                target[name] = value
