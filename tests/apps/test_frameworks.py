"""Starlette, Flask + Flask-SQLAlchemy, Litestar, FastAPI on async SQLAlchemy and
SQLModel: the same HTTP contract (login, add a note, count notes) and the same tests
through app_client, app_async_client and live_server with as_user, -n 2 in random order:
the code under test commits and no row outlives its test."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest
from clients_project import INI, SYNC_LINES, lines_of, write_project

#: The tests, the same for every framework: the application under test is the variable.
TESTS = """
import json
import urllib.request

import pytest
from sqlalchemy import text


@pytest.mark.parametrize("n", range(3))
def test_sync_client(n, app_client):
    ada = app_client.as_user("ada")
    assert app_client.get("/count").json() == {"notes": 0}  # nothing leaked
    response = ada.post("/notes", json={"body": f"sync {n}"})
    assert response.status_code == 201, response.text
    assert response.json()["author"] == "ada"
    assert app_client.get("/count").json() == {"notes": 1}


@pytest.mark.parametrize("n", range(3))
async def test_async_client(n, app_async_client):
    grace = await app_async_client.as_user("grace")
    assert (await app_async_client.get("/count")).json() == {"notes": 0}
    response = await grace.post("/notes", json={"body": f"async {n}"})
    assert response.status_code == 201, response.text
    assert (await grace.get("/count")).json() == {"notes": 1}


def post_note(live_server, token, body):
    # POST a note over the live server: 201 expected, the body left unread.
    request = urllib.request.Request(
        live_server.url + "/notes",
        data=json.dumps({"body": body}).encode(),
        headers={"Authorization": token, "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 201


def post_note_then_count(live_server, token, body):
    # POST a note, then GET /count: its JSON.
    post_note(live_server, token, body)
    with urllib.request.urlopen(live_server.url + "/count", timeout=10) as response:
        return json.load(response)


@pytest.mark.parametrize("n", range(3))
def test_live_server(n, live_server, app_client):
    token = app_client.as_user("ada").headers["authorization"]
    assert post_note_then_count(live_server, token, f"live {n}") == {"notes": 1}


def test_live_requests_back_to_back(live_server, app_client):
    # A live server answers before the application closes the request's session: the
    # next request must not begin on the test's connection while that one still ends.
    token = app_client.as_user("ada").headers["authorization"]
    for n in range(1, 301):
        assert post_note_then_count(live_server, token, f"back to back {n}") == {"notes": n}


def test_live_request_then_the_tests_own_session(live_server, app_client, postgres_session):
    # The status reaches the client once the application is done with the request: the
    # test's own session, on the connection the request's session used, comes after it.
    token = app_client.as_user("ada").headers["authorization"]
    for n in range(1, 201):
        post_note(live_server, token, f"then the test {n}")
        assert postgres_session.execute(text("SELECT count(*) FROM notes")).scalar() == n
        postgres_session.commit()


def test_in_process_request_then_the_tests_own_commit(app_client, postgres_session):
    # An in-process request runs in the test's thread: the application's session must
    # end with it, not stay open above the test's own on their connection.
    assert app_client.get("/count").json() == {"notes": 0}
    assert postgres_session.execute(text("SELECT count(*) FROM notes")).scalar() == 0
    postgres_session.commit()


def test_bad_token(app_client):
    bad = {"Authorization": "Bearer 1.x"}
    assert app_client.post("/notes", json={"body": "x"}, headers=bad).status_code == 401
"""

STARLETTE = """
from sqlalchemy import func, select
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from app.db import SessionLocal
from app.models import Note, User
from app.security import check_password, token_for, user_id_from


async def login(request):
    data = await request.json()
    with SessionLocal() as db:
        user = db.scalar(select(User).where(User.name == data["name"]))
        if user is None or not check_password(user.password, data["password"]):
            return JSONResponse({}, status_code=401)
        return JSONResponse({"token": token_for(user.id)})


async def add_note(request):
    token = request.headers.get("authorization", "").removeprefix("Bearer ")
    with SessionLocal() as db:
        user_id = user_id_from(token)
        user = db.get(User, user_id) if user_id else None
        if user is None:
            return JSONResponse({}, status_code=401)
        note = Note(user_id=user.id, body=(await request.json())["body"])
        db.add(note)
        db.commit()
        return JSONResponse({"id": note.id, "author": user.name}, status_code=201)


async def count(request):
    with SessionLocal() as db:
        return JSONResponse({"notes": db.scalar(select(func.count()).select_from(Note))})


app = Starlette(routes=[
    Route("/login", login, methods=["POST"]),
    Route("/notes", add_note, methods=["POST"]),
    Route("/count", count),
])
"""

FLASK = """
import os

from flask import Flask, jsonify, request
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import func, select

from app.models import Base, Note, User
from app.security import check_password, token_for, user_id_from

app = Flask(__name__)
app.config["SQLALCHEMY_DATABASE_URI"] = os.environ["DATABASE_URL"]
db = SQLAlchemy(app, model_class=Base)


@app.post("/login")
def login():
    data = request.get_json()
    user = db.session.scalar(select(User).where(User.name == data["name"]))
    if user is None or not check_password(user.password, data["password"]):
        return {}, 401
    return {"token": token_for(user.id)}


@app.post("/notes")
def add_note():
    user_id = user_id_from(request.headers.get("Authorization", "").removeprefix("Bearer "))
    user = db.session.get(User, user_id) if user_id else None
    if user is None:
        return {}, 401
    note = Note(user_id=user.id, body=request.get_json()["body"])
    db.session.add(note)
    db.session.commit()
    return {"id": note.id, "author": user.name}, 201


@app.get("/count")
def count():
    return jsonify(notes=db.session.scalar(select(func.count()).select_from(Note)))
"""

#: The Flask-SQLAlchemy recipe of docs/frameworks.md: its session joins the test's.
FLASK_CONFTEST = """
import pytest

from app.main import app, db


@pytest.fixture(autouse=True)
def _flask_sqlalchemy_in_rollback(postgres_session):
    with app.app_context():  # only to reach db.engines: each request pushes its own
        engines, saved = db.engines, db.engines[None]
    engines[None] = postgres_session.connection()
    db.session.session_factory.configure(join_transaction_mode="create_savepoint")
    yield
    engines[None] = saved
"""

LITESTAR = """
from typing import Any

from litestar import Litestar, Request, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import JSONBody
from litestar.exceptions import NotAuthorizedException
from sqlalchemy import func, select

from app.db import SessionLocal
from app.models import Note, User
from app.security import check_password, token_for, user_id_from


Db = NamedDependency[Any]  # the session provide_db yields


def provide_db():
    with SessionLocal() as session:
        yield session


@post("/login", status_code=200, sync_to_thread=False)
def login(data: JSONBody[dict[str, str]], db: Db) -> dict[str, str]:
    user = db.scalar(select(User).where(User.name == data["name"]))
    if user is None or not check_password(user.password, data["password"]):
        raise NotAuthorizedException()
    return {"token": token_for(user.id)}


@post("/notes", sync_to_thread=False)
def add_note(request: Request, data: JSONBody[dict[str, str]], db: Db) -> dict[str, Any]:
    user_id = user_id_from(request.headers.get("authorization", "").removeprefix("Bearer "))
    user = db.get(User, user_id) if user_id else None
    if user is None:
        raise NotAuthorizedException()
    note = Note(user_id=user.id, body=data["body"])
    db.add(note)
    db.commit()
    return {"id": note.id, "author": user.name}


@get("/count", sync_to_thread=False)
def count(db: Db) -> dict[str, int]:
    return {"notes": db.scalar(select(func.count()).select_from(Note))}


app = Litestar([login, add_note, count], dependencies={"db": Provide(provide_db)})
"""

FASTAPI_ASYNC_DB = """
import os

from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

engine = create_async_engine(os.environ["DATABASE_URL"])
AsyncSessionLocal = async_sessionmaker(engine, expire_on_commit=False)
"""

FASTAPI_ASYNC = """
from fastapi import Depends, FastAPI, Header, HTTPException
from pydantic import BaseModel
from sqlalchemy import func, select

from app.db import AsyncSessionLocal
from app.models import Note, User
from app.security import check_password, token_for, user_id_from

app = FastAPI()


async def get_db():
    async with AsyncSessionLocal() as session:
        yield session


class Login(BaseModel):
    name: str
    password: str


class NoteIn(BaseModel):
    body: str


@app.post("/login")
async def login(data: Login, db=Depends(get_db)):
    user = await db.scalar(select(User).where(User.name == data.name))
    if user is None or not check_password(user.password, data.password):
        raise HTTPException(401)
    return {"token": token_for(user.id)}


@app.post("/notes", status_code=201)
async def add_note(data: NoteIn, authorization: str = Header(), db=Depends(get_db)):
    user_id = user_id_from(authorization.removeprefix("Bearer "))
    user = await db.get(User, user_id) if user_id else None
    if user is None:
        raise HTTPException(401)
    note = Note(user_id=user.id, body=data.body)
    db.add(note)
    await db.commit()
    return {"id": note.id, "author": user.name}


@app.get("/count")
async def count(db=Depends(get_db)):
    return {"notes": await db.scalar(select(func.count()).select_from(Note))}
"""

#: query_counter sees the application's async engine, in the application's loop thread.
ASYNC_QUERY_COUNT = """
async def test_query_counter_counts_async_engines(app_async_client, query_counter):
    with query_counter() as q:
        assert (await app_async_client.get("/count")).json() == {"notes": 0}
    assert q.count == 1, q.statements
    assert "count(*)" in q.statements[0]
"""

SQLMODEL_DB = """
import os

from sqlmodel import Session, create_engine

engine = create_engine(os.environ["DATABASE_URL"])


def get_session():
    with Session(engine) as session:  # the SQLModel tutorial's dependency
        yield session
"""

SQLMODEL_MODELS = """
from sqlmodel import Field, SQLModel


class User(SQLModel, table=True):
    __tablename__ = "users"
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=50, unique=True)
    password: str = Field(max_length=100)


class Note(SQLModel, table=True):
    __tablename__ = "notes"
    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="users.id")
    body: str = Field(max_length=200)


Base = SQLModel  # integration_schema = app.models:Base.metadata
"""

SQLMODEL = """
from fastapi import Depends, FastAPI, Header, HTTPException
from sqlmodel import Session, SQLModel, func, select

from app.db import get_session
from app.models import Note, User
from app.security import check_password, token_for, user_id_from

app = FastAPI()


class Login(SQLModel):
    name: str
    password: str


class NoteIn(SQLModel):
    body: str


class NoteOut(SQLModel):
    id: int
    author: str


@app.post("/login")
def login(data: Login, session: Session = Depends(get_session)):
    user = session.exec(select(User).where(User.name == data.name)).first()
    if user is None or not check_password(user.password, data.password):
        raise HTTPException(401)
    return {"token": token_for(user.id)}


@app.post("/notes", status_code=201, response_model=NoteOut)
def add_note(
    data: NoteIn, authorization: str = Header(), session: Session = Depends(get_session)
):
    user_id = user_id_from(authorization.removeprefix("Bearer "))
    user = session.get(User, user_id) if user_id else None
    if user is None:
        raise HTTPException(401)
    note = Note(user_id=user.id, body=data.body)
    session.add(note)
    session.commit()
    return NoteOut(id=note.id, author=user.name)


@app.get("/count")
def count(session: Session = Depends(get_session)):
    return {"notes": session.exec(select(func.count()).select_from(Note)).one()}
"""

# The FastAPI tutorial's dependency over a sessionmaker, bound by integration_sessionmaker;
# the SQLModel case's routes and models (get_session is what they depend on).
FASTAPI_SESSIONMAKER_DB = """
import os

from sqlalchemy import create_engine
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session

engine = create_engine(os.environ["DATABASE_URL"])
SessionLocal = sessionmaker(bind=engine, class_=Session)


def get_session():
    db = SessionLocal()
    try:
        yield db
    finally:
        db.close()
"""

CASES = {
    "starlette": {"main": STARLETTE, "extra": "integration_sessionmaker = app.db:SessionLocal"},
    "flask": {"main": FLASK, "extra": "", "files": {"conftest.py": FLASK_CONFTEST}},
    "litestar": {
        "main": LITESTAR,
        "extra": "integration_sessionmaker = app.db:SessionLocal\nintegration_openapi = true",
    },
    "fastapi-async": {
        "main": FASTAPI_ASYNC,
        "driver": ":asyncpg",
        "extra": "integration_sessionmaker = app.db:AsyncSessionLocal\nintegration_openapi = true",
        "files": {"app/db.py": FASTAPI_ASYNC_DB},
        "tests": ASYNC_QUERY_COUNT,
    },
    "sqlmodel": {
        "main": SQLMODEL,
        "extra": "integration_app_session = app.db:get_session\nintegration_openapi = true",
        "files": {"app/db.py": SQLMODEL_DB, "app/models.py": SQLMODEL_MODELS},
    },
    "fastapi-sessionmaker": {
        "main": SQLMODEL,
        "extra": "integration_sessionmaker = app.db:SessionLocal",
        "files": {"app/db.py": FASTAPI_SESSIONMAKER_DB, "app/models.py": SQLMODEL_MODELS},
    },
}


@pytest.mark.parametrize("framework", list(CASES))
def test_framework(
    framework: str, pytester: pytest.Pytester, backend_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    case = CASES[framework]
    write_project(
        pytester,
        case["main"],
        extra=case["extra"],
        driver=case.get("driver", ""),
        files=case.get("files"),
    )
    monkeypatch.setenv("LOGIN_LOG", str(pytester.path / "logins.txt"))
    pytester.makepyfile(test_app=TESTS + case.get("tests", ""))
    result = pytester.runpytest_subprocess("-n", "2", "-p", "randomly")
    result.assert_outcomes(passed=13 + case.get("tests", "").count("def test_"))
    logins = lines_of(pytester, "logins.txt")
    for worker in ("gw0", "gw1"):  # once per user and worker, not per test
        mine = [line for line in logins if line.startswith(worker)]
        assert len(mine) == len(set(mine)) <= 2, logins


def _kit_ini_lines(ini: str) -> tuple[int, int]:
    """``integration_*`` lines of an ini file (an entry's continuation lines count), and
    how many of them are needed (without seed, login and OpenAPI validation)."""
    optional = ("integration_seed", "integration_login", "integration_openapi")
    total = needed = 0
    current = ""
    for line in ini.splitlines():
        if not line.strip():
            continue
        if line.startswith("integration_"):
            current = line.split("=", 1)[0].strip()
        elif not line[0].isspace():
            current = ""
        if current:
            total += 1
            needed += current not in optional
    return total, needed


def test_the_port_cost_table_in_the_docs_is_true() -> None:
    """docs/frameworks.md says how many ini and conftest lines each framework's port
    needs: the projects above are the ones counted, and no conftest uses the kit's
    modules."""
    docs = (Path(__file__).parents[2] / "docs" / "frameworks.md").read_text()
    cases = {"fastapi-sync": {"extra": SYNC_LINES}, **CASES}
    for name, case in cases.items():
        ini = textwrap.dedent(INI).format(
            extra=textwrap.dedent(case["extra"]).strip(), driver=case.get("driver", "")
        )
        total, needed = _kit_ini_lines(ini)
        conftest = textwrap.dedent(case.get("files", {}).get("conftest.py", "")).strip()
        lines = len(conftest.splitlines()) if conftest else 0
        assert "pytest_integration_kit" not in conftest
        assert total <= 20
        assert lines <= 20
        row = re.search(rf"\(`{re.escape(name)}`\) \| (\d+) \| (\d+) \| (\d+) \|", docs)
        assert row is not None, f"docs/frameworks.md has no row for {name}"
        assert tuple(map(int, row.groups())) == (total, needed, lines), name


# An application that never closes its sessions: the dependency returns one, FastAPI
# drops it after the request with its transaction open (the refresh after commit).
LEAKY_DB = (
    FASTAPI_SESSIONMAKER_DB.split("def get_session", maxsplit=1)[0]
    + """
def get_session():
    return SessionLocal()
"""
)


@pytest.mark.parametrize("backend", ["local"])
def test_an_app_that_never_closes_its_sessions(
    pytester: pytest.Pytester, backend_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Behind live_server the app's sessions take turns on the test's connection; a
    # session its request dropped must give the turn up, not hold it until the bound.
    write_project(
        pytester,
        SQLMODEL,
        extra="integration_sessionmaker = app.db:SessionLocal",
        files={"app/db.py": LEAKY_DB, "app/models.py": SQLMODEL_MODELS},
    )
    monkeypatch.setenv("LOGIN_LOG", str(pytester.path / "logins.txt"))
    pytester.makepyfile(test_app=TESTS)
    # A POST then a GET on the live server (the GET waits for the POST's dropped
    # session), and the in-process client's check that nothing leaked.
    result = pytester.runpytest_subprocess("-k", "test_live_server or test_sync_client")
    result.assert_outcomes(passed=6)
