"""Binding factory_boy's SQLAlchemy factories to the current test's session.

``SQLAlchemyModelFactory`` reads its session from ``Meta.sqlalchemy_session`` (or
``sqlalchemy_session_factory``) every time it creates an object, so pointing that at
the test's session for the duration of the test is all a binding takes — and undoing
it afterwards keeps one test's session from leaking into the next.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterator

    from sqlalchemy.ext.asyncio import AsyncSession
    from sqlalchemy.orm import Session

__all__ = ["bind_factories"]


@contextmanager
def bind_factories(session: Session | AsyncSession, *factories: Any) -> Iterator[None]:
    """Make ``factories`` (and their subclasses' shared options) create into ``session``.

    For an ``AsyncSession`` the factories use its ``sync_session``; objects are added
    (and flushed if the factory's ``sqlalchemy_session_persistence`` says so) through
    it, which is safe because AsyncSession runs that sync session on its own greenlet:
    call the factories inside ``await session.run_sync(lambda _: UserFactory())``.
    """
    target = getattr(session, "sync_session", session)
    saved: list[tuple[Any, Any, Any]] = []
    for factory_class in factories:
        options = factory_class._meta
        saved.append((options, options.sqlalchemy_session, options.sqlalchemy_session_factory))
        options.sqlalchemy_session = target
        options.sqlalchemy_session_factory = None
    try:
        yield
    finally:
        for options, session_before, factory_before in reversed(saved):
            options.sqlalchemy_session = session_before
            options.sqlalchemy_session_factory = factory_before
