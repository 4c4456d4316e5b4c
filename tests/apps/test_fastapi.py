"""FastAPI with sync SQLAlchemy: app_client, app_async_client and live_server through the
application, with as_user, query_counter and OpenAPI validation, across xdist workers in
random order."""

from __future__ import annotations

import pytest
from clients_project import lines_of, write_project

MAIN = """
import os
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, Header, HTTPException
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import func, select

from app.db import SessionLocal
from app.models import Note, User
from app.security import check_password, token_for, user_id_from


@asynccontextmanager
async def lifespan(app):
    with open(os.environ["STARTUP_LOG"], "a") as log:
        log.write(os.environ.get("PYTEST_XDIST_WORKER", "main") + "\\n")
    yield {"greeting": "hello"}


app = FastAPI(lifespan=lifespan)


def get_db():
    with SessionLocal() as session:
        yield session


def current_user(authorization: str = Header(), db=Depends(get_db)):
    user_id = user_id_from(authorization.removeprefix("Bearer "))
    user = db.get(User, user_id) if user_id else None
    if user is None:
        raise HTTPException(401)
    return user


class Login(BaseModel):
    name: str
    password: str


class NoteIn(BaseModel):
    body: str


class NoteOut(BaseModel):
    id: int
    body: str
    author: str


@app.post("/login")
def login(data: Login, db=Depends(get_db)):
    user = db.scalar(select(User).where(User.name == data.name))
    if user is None or not check_password(user.password, data.password):
        raise HTTPException(401)
    return {"token": token_for(user.id)}


@app.post("/notes", status_code=201, response_model=NoteOut)
def add_note(data: NoteIn, user=Depends(current_user), db=Depends(get_db)):
    note = Note(user_id=user.id, body=data.body)
    db.add(note)
    db.commit()  # the code under test commits
    return NoteOut(id=note.id, body=note.body, author=user.name)


@app.get("/notes", response_model=list[NoteOut])
def list_notes(db=Depends(get_db)):
    notes = db.scalars(select(Note).order_by(Note.id)).all()
    return [NoteOut(id=n.id, body=n.body, author=n.user.name) for n in notes]  # N+1


@app.get("/count")
def count(db=Depends(get_db)):
    return {"notes": db.scalar(select(func.count()).select_from(Note))}


@app.get("/greeting")
def greeting(request: __import__("fastapi").Request):
    return {"greeting": request.state.greeting}


@app.get("/drifted", response_model=NoteOut)
def drifted():
    # The schema says id is an integer and author is required: this answer broke it.
    return JSONResponse({"id": "seven", "body": "x"})
"""

TESTS = """
import json
import urllib.request

import pytest


@pytest.mark.parametrize("n", range(4))
def test_sync_client(n, app_client):
    ada = app_client.as_user("ada")
    assert app_client.get("/count").json() == {"notes": 0}  # nothing leaked
    response = ada.post("/notes", json={"body": f"sync {n}"})
    assert response.status_code == 201
    assert response.json()["author"] == "ada"
    assert app_client.get("/count").json() == {"notes": 1}


@pytest.mark.parametrize("n", range(4))
async def test_async_client(n, app_async_client):
    grace = await app_async_client.as_user("grace")
    assert (await app_async_client.get("/count")).json() == {"notes": 0}
    response = await grace.post("/notes", json={"body": f"async {n}"})
    assert response.status_code == 201
    assert (await grace.get("/count")).json() == {"notes": 1}


@pytest.mark.parametrize("n", range(4))
def test_live_server(n, live_server, app_client):
    headers = dict(app_client.as_user("ada").headers)
    assert live_server.url.startswith("http://127.0.0.1:")
    request = urllib.request.Request(
        live_server.url + "/notes",
        data=json.dumps({"body": f"live {n}"}).encode(),
        headers={"Authorization": headers["authorization"], "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 201
    with urllib.request.urlopen(live_server.url + "/count", timeout=10) as response:
        assert json.load(response) == {"notes": 1}


def test_lifespan_state_reaches_requests(app_client):
    assert app_client.get("/greeting").json() == {"greeting": "hello"}


def test_unauthenticated(app_client):
    bad = {"Authorization": "Bearer 1.x"}
    response = app_client.post("/notes", json={"body": "x"}, headers=bad)
    assert response.status_code == 401


def test_query_counter(app_client, query_counter):
    ada = app_client.as_user("ada")
    with query_counter() as q:
        ada.post("/notes", json={"body": "one"})
    assert q.count >= 2
    assert any(s.lstrip().upper().startswith("INSERT") for s in q.statements)
"""

FAILING = """
def test_n_plus_one(app_client, query_counter):
    for user in ("ada", "grace"):
        for n in range(2):
            app_client.as_user(user).post("/notes", json={"body": f"note {n}"})
    with query_counter.at_most(2):  # one for the notes, one per author: an N+1
        app_client.get("/notes")


def test_drifted_schema(app_client):
    app_client.get("/drifted")
"""


@pytest.fixture
def project(pytester: pytest.Pytester, backend_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The FastAPI user project, its startups and logins logged to files the tests read."""
    write_project(pytester, MAIN)
    monkeypatch.setenv("STARTUP_LOG", str(pytester.path / "startups.txt"))
    monkeypatch.setenv("LOGIN_LOG", str(pytester.path / "logins.txt"))


def test_fastapi_through_every_client(pytester: pytest.Pytester, project: None) -> None:
    pytester.makepyfile(test_app=TESTS)
    result = pytester.runpytest_subprocess("-n", "2", "-p", "randomly")
    result.assert_outcomes(passed=15)
    startups = lines_of(pytester, "startups.txt")
    assert sorted(startups) == ["gw0", "gw1"], startups  # lifespan once per worker
    logins = lines_of(pytester, "logins.txt")
    for worker in ("gw0", "gw1"):  # once per user and worker, not per test
        mine = [line for line in logins if line.startswith(worker)]
        assert len(mine) == len(set(mine)) <= 2, logins


def test_n_plus_one_and_schema_drift_fail(pytester: pytest.Pytester, project: None) -> None:
    pytester.makepyfile(test_failing=FAILING)
    result = pytester.runpytest_subprocess("-p", "no:randomly")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(
        [
            "*QueryBudgetExceeded: 3 SQL statements, at most 2 expected:*",
            "*1. SELECT notes.id*",
            "*FROM users*",
            "*ResponseMismatch: response does not match the OpenAPI document: GET /drifted → 200",
            "*(body): 'author' is a required property",
            "*id: 'seven' is not of type 'integer'",
        ],
        consecutive=False,
    )
