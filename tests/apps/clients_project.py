"""A user's web application for the app-client tests, written into a pytester directory.

The application reads ``DATABASE_URL`` at import (set by ``integration_env``), opens its
own sessions from a module-level sessionmaker and commits in its endpoints. Login
checks a deliberately slow password hash, so caching is visible in wall time. Each
framework's variant shares the models, the seed data and the login helper.
"""

from __future__ import annotations

import textwrap

import pytest

MODELS = """
from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50), unique=True)
    password: Mapped[str] = mapped_column(String(100))


class Note(Base):
    __tablename__ = "notes"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    body: Mapped[str] = mapped_column(String(200))
    user: Mapped[User] = relationship(lazy="select")
"""

DB = """
import os

from sqlalchemy import create_engine
from sqlalchemy.orm import sessionmaker

DATABASE_URL = os.environ["DATABASE_URL"]  # read at import, like a settings object
engine = create_engine(DATABASE_URL)
SessionLocal = sessionmaker(bind=engine)
"""

#: Tokens are signed, so they outlive the test that made them; the hash is slow on purpose.
SECURITY = """
import hashlib
import hmac
import os
import time

SECRET = b"test-secret"
HASH_SECONDS = float(os.environ.get("HASH_SECONDS", "0.05"))


def check_password(stored, given):
    time.sleep(HASH_SECONDS)  # argon2-like cost
    return hmac.compare_digest(stored, hashlib.sha256(given.encode()).hexdigest())


def token_for(user_id):
    signature = hmac.new(SECRET, str(user_id).encode(), "sha256").hexdigest()
    return f"{user_id}.{signature}"


def user_id_from(token):
    user_id, _, signature = token.partition(".")
    expected = hmac.new(SECRET, user_id.encode(), "sha256").hexdigest()
    return int(user_id) if hmac.compare_digest(signature, expected) else None
"""

SEED = """
INSERT INTO users (id, name, password) VALUES
  (1, 'ada', '2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b'),
  (2, 'grace', '2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b');
"""

#: The login helper a user writes once: given the client and a user name.
AUTH = """
import os


def login(client, user):
    with open(os.environ["LOGIN_LOG"], "a") as log:
        log.write(f"{os.environ.get('PYTEST_XDIST_WORKER', 'main')} {user}\\n")
    response = client.post("/login", json={"name": user, "password": "secret"})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['token']}"}
"""

INI = """
[pytest]
integration_schema = app.models:Base.metadata
integration_seed = seed.sql
integration_env =
    DATABASE_URL={{postgres.url{driver}}}
integration_app = app.main:app
integration_login = tests.auth:login
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
filterwarnings =
    error
{extra}
"""


#: The ini lines a FastAPI application on sync SQLAlchemy needs beyond the common ones.
SYNC_LINES = """
integration_sessionmaker = app.db:SessionLocal
integration_openapi = true
"""


def write_project(
    pytester: pytest.Pytester,
    main: str,
    *,
    extra: str = SYNC_LINES,
    driver: str = "",
    files: dict[str, str] | None = None,
) -> None:
    """The ``app`` package with ``main`` as app/main.py, tests/auth.py, seed and ini;
    ``files`` adds or replaces files (``app/db.py``, ``conftest.py``)."""
    package = pytester.mkpydir("app")
    (package / "models.py").write_text(textwrap.dedent(MODELS))
    (package / "db.py").write_text(textwrap.dedent(DB))
    (package / "security.py").write_text(textwrap.dedent(SECURITY))
    (package / "main.py").write_text(textwrap.dedent(main))
    tests = pytester.mkpydir("tests")
    (tests / "auth.py").write_text(textwrap.dedent(AUTH))
    pytester.path.joinpath("seed.sql").write_text(SEED)
    ini = textwrap.dedent(INI).format(extra=textwrap.dedent(extra).strip(), driver=driver)
    pytester.makefile(".ini", pytest=ini)
    for name, body in (files or {}).items():
        pytester.path.joinpath(name).write_text(textwrap.dedent(body))


def lines_of(pytester: pytest.Pytester, name: str) -> list[str]:
    path = pytester.path / name
    return path.read_text().splitlines() if path.exists() else []
