"""The requests of one test take turns on its connection (``integration_app_session``,
and ``integration_sessionmaker`` behind ``live_server``): a second request's session
waits for the first's close, and a wait that cannot end says why instead of hanging."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from pytest_integration_kit.apps.joined_sessions import JoinedSessions
from pytest_integration_kit.errors import IntegrationKitError
from pytest_integration_kit.isolation.binding import SessionTurns, bind_sessionmakers


@pytest.fixture
def test_session(url_servers: dict[str, str]) -> Iterator[Session]:
    """A session on a real PostgreSQL connection, as the test's own session is."""
    engine = sa.create_engine(url_servers["postgres"])
    with engine.connect() as connection, connection.begin():
        yield Session(bind=connection, join_transaction_mode="create_savepoint")
    engine.dispose()


def _close(request: Iterator[Session]) -> None:
    """What FastAPI does after the response: run the dependency to its end."""
    with pytest.raises(StopIteration):
        next(request)


def test_a_request_waits_for_the_last_ones_session_to_close(test_session: Session) -> None:
    joined = JoinedSessions(test_session, Session, timeout=10)
    first = joined.dependency()
    next(first).execute(sa.text("SELECT 1"))
    began: list[float] = []

    def second() -> None:
        request = joined.dependency()
        next(request).execute(sa.text("SELECT 1"))
        began.append(time.monotonic())
        _close(request)

    thread = threading.Thread(target=second)
    thread.start()
    time.sleep(0.3)
    assert not began  # its turn has not come while the first's session is open
    closed = time.monotonic()
    _close(first)
    thread.join(timeout=10)
    assert began
    assert began[0] >= closed


def test_a_wait_that_cannot_end_fails_saying_why(test_session: Session) -> None:
    joined = JoinedSessions(test_session, Session, timeout=0.2)
    first = joined.dependency()
    next(first)
    with pytest.raises(IntegrationKitError, match=r"waited 0\.2 s .*\(calling the live server"):
        next(joined.dependency())
    _close(first)
    third = joined.dependency()  # the turn is free again
    assert next(third).execute(sa.text("SELECT 1")).scalar() == 1
    _close(third)


# The same turns for the application's own sessionmakers (integration_sessionmaker),
# on while live_server is in use.


Bound = tuple["sessionmaker[Session]", SessionTurns]


@pytest.fixture
def bound_maker(url_servers: dict[str, str]) -> Iterator[Bound]:
    """The application's sessionmaker bound to one connection in a transaction, with turns."""
    engine = sa.create_engine(url_servers["postgres"])
    maker = sessionmaker(bind=engine)
    # Long enough for a loaded machine's garbage collections while a session waits; the
    # waits that cannot end set a short bound of their own.
    turns = SessionTurns(timeout=10)
    with (
        engine.connect() as connection,
        connection.begin(),
        bind_sessionmakers([(maker, connection, True)], turns),
    ):
        yield maker, turns
    engine.dispose()


def test_bound_sessions_nest_freely_while_turns_are_off(
    bound_maker: Bound,
) -> None:
    maker, _ = bound_maker
    with maker() as outer, maker() as inner:
        outer.execute(sa.text("SELECT 1"))
        assert inner.execute(sa.text("SELECT 2")).scalar() == 2


def test_bound_sessions_take_turns_while_on(
    bound_maker: Bound,
) -> None:
    maker, turns = bound_maker
    turns.on = True
    began: list[float] = []
    first = maker()
    first.execute(sa.text("SELECT 1"))  # its transaction holds the turn

    def second() -> None:
        with maker() as session:
            session.execute(sa.text("SELECT 1"))
            began.append(time.monotonic())

    thread = threading.Thread(target=second)
    thread.start()
    time.sleep(0.1)
    assert not began
    closed = time.monotonic()
    first.close()
    thread.join(timeout=10)
    assert began
    assert began[0] >= closed
    # A session opened inside another's transaction waits for itself, then says so.
    turns.timeout = 0.3
    with maker() as outer:
        outer.execute(sa.text("SELECT 1"))
        with pytest.raises(IntegrationKitError, match=r"waited 0\.3 s .*live_server"):
            maker().execute(sa.text("SELECT 1"))


def test_a_session_dropped_without_close_gives_up_its_turn(bound_maker: Bound) -> None:
    """An application that never closes its sessions (``db = SessionLocal(); yield db``)
    worked behind live_server before the turns: a dropped session must not hold them."""
    maker, turns = bound_maker
    turns.on = True
    for _ in range(3):
        dropped = maker()
        dropped.execute(sa.text("SELECT 1"))  # begins its transaction: holds the turn
        del dropped
        with maker() as session:
            assert session.execute(sa.text("SELECT 2")).scalar() == 2
