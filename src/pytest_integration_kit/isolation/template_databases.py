"""Template databases: named by the schema's fingerprint, built once, pruned when unused.

A template holds the schema, migrations, seed rows and the kit's change tracking; every
worker database and clone is copied from it. Its name is a hash of the schema's
fingerprint, so an identical one found on the server is reused; its label says the day a
session last used it, so templates of old schemas go after a week.
:class:`~pytest_integration_kit.isolation.databases.IsolatedDatabases` decides when to
build (under a server-wide lock); these functions do the work.
"""

from __future__ import annotations

import datetime
import hashlib
import re
from typing import TYPE_CHECKING

from pytest_integration_kit.errors import IntegrationKitError
from pytest_integration_kit.isolation import tracking
from pytest_integration_kit.isolation.errors import IsolationError
from pytest_integration_kit.isolation.naming import TEMPLATE_PREFIX

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from pytest_integration_kit.isolation.admin import DatabaseAdmin
    from pytest_integration_kit.isolation.databases import IsolatedDatabases

__all__ = [
    "TEMPLATE_UNUSED_DAYS",
    "TemplateToBuild",
    "build_template",
    "label_day",
    "prune_templates",
    "template_label",
    "template_name",
]

#: A template no session has used for this long is dropped when another is built.
TEMPLATE_UNUSED_DAYS = 7


class TemplateToBuild(Exception):
    """:meth:`IsolatedDatabases.prepare` found no ready template: left to the next user."""


def template_name(fingerprint: str) -> str:
    """``pik_tpl_<hash>`` of the schema's fingerprint."""
    # The tracking's version too: a template with older bookkeeping is not reused.
    digest = hashlib.sha256(f"{fingerprint}:{tracking.TRACKING_VERSION}".encode())
    return TEMPLATE_PREFIX + digest.hexdigest()[:24]


def template_label(day: datetime.date | None = None) -> str:
    """What a template says about itself: the day a session last used it."""
    return f"pytest-integration-kit template used={(day or datetime.date.today()).isoformat()}"


def label_day(label: str) -> datetime.date | None:
    """The day in a :func:`template_label`; None for any other label."""
    match = re.fullmatch(r"pytest-integration-kit template used=(\d{4}-\d\d-\d\d)", label.strip())
    return datetime.date.fromisoformat(match[1]) if match else None


def build_template(databases: IsolatedDatabases, conn: object, name: str, fingerprint: str) -> None:
    """Create ``name`` empty, apply the schema and the tracking, then mark it ready; on
    failure drop it (the caller holds the template's lock on ``conn``)."""
    from sqlalchemy.pool import NullPool  # noqa: PLC0415 - optional dependency, imported when used

    admin, endpoint, source = databases.admin, databases.endpoint, databases.source

    assert hasattr(conn, "exec_driver_sql")
    # On a server the kit started, from its template1: integration_postgres_init
    # and _extensions are there (a url server's template1 is not ours to copy).
    kit_server = endpoint.backend != "url"
    admin.create_empty(conn, name, kit_server=kit_server)  # type: ignore[arg-type]
    engine = admin.engine(endpoint, name, poolclass=NullPool)
    try:
        source.apply(engine)
        admin.install_tracking(engine)
    except IntegrationKitError:
        admin.drop(conn, name)  # type: ignore[arg-type]
        raise
    except Exception as exc:
        admin.drop(conn, name)  # type: ignore[arg-type]
        raise IsolationError(
            f"building the template database {name!r} failed: {type(exc).__name__}: {exc}"
        ) from exc
    finally:
        engine.dispose()
    admin.mark_ready(conn, name, fingerprint)  # type: ignore[arg-type]


def prune_templates(
    admin: DatabaseAdmin,
    admin_engine: Engine,
    *,
    keep: str,
    unused_days: int = TEMPLATE_UNUSED_DAYS,
) -> list[str]:
    """Drop templates of other schemas that no session has used for ``unused_days``.

    Long-lived servers (url, reuse) would otherwise keep one template per schema
    version forever. Unlabelled templates are left alone.
    """
    cutoff = datetime.date.today() - datetime.timedelta(days=unused_days)
    dropped: list[str] = []
    with admin_engine.connect() as conn:
        for name, label in admin.labelled(conn, TEMPLATE_PREFIX, templates=True).items():
            day = label_day(label)
            if name == keep or day is None or day >= cutoff:
                continue
            admin.lock(conn, name)  # not while someone builds or clones it
            try:
                admin.drop_template(conn, name)
            finally:
                admin.unlock(conn, name)
            dropped.append(name)
    return dropped
