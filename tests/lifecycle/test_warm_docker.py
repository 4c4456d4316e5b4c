"""Warm docker start: a run's cold start leaves an image whose data directory is
initialised; later runs start from it, with a password of their own."""

from __future__ import annotations

import contextlib
import io
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from filelock import FileLock
from user_project import make_project

from pytest_integration_kit.backends.base import ServerOptions
from pytest_integration_kit.backends.docker import DockerBackend
from pytest_integration_kit.backends.warm_images import (
    WARM_BASE_LABEL,
    WARM_LABEL,
    WarmImage,
    warm_image_for,
)
from pytest_integration_kit.lifecycle.attached import docker_client
from pytest_integration_kit.services import spec_for

IMAGES = {
    "postgres": "pytest-integration-kit/postgres:15",
    "mysql": "pytest-integration-kit/mysql:10.11",
}

#: Each test's servers get an option of their own: its warm image is its own too.
OPTION = {"postgres": "application_name={}", "mysql": "max_connections={}"}

STALE_PASSWORD_TESTS = """
import os, psycopg, pymysql, pytest

def test_server(request, report):
    service = os.environ["PIK_SERVICE"]
    server = request.getfixturevalue(f"{service}_server")
    report(service=service, password=server.password)
    old = os.environ.get("PIK_OLD_PASSWORD")
    def login(password):
        if service == "postgres":
            psycopg.connect(host=server.host, port=server.port, user=server.user,
                            password=password, dbname=server.database, connect_timeout=5).close()
        else:
            pymysql.connect(host=server.host, port=server.port, user=server.user,
                            password=password, connect_timeout=5).close()
    if old:
        assert old != server.password
        with pytest.raises((psycopg.OperationalError, pymysql.err.OperationalError)):
            login(old)
    login(server.password)
"""


def _unique_option(service: str) -> str:
    value = 100 + secrets.randbelow(800) if service == "mysql" else secrets.token_hex(6)
    return OPTION[service].format(f"pik_warm_{value}" if service == "postgres" else value)


def _warm_images(option: str) -> list[object]:
    """Warm images whose key an option made unique (found by label, then by history)."""
    client = docker_client()
    found = []
    for image in client.images.list(filters={"label": WARM_LABEL}):
        history = " ".join(str(h.get("CreatedBy", "")) for h in image.history())
        if option in history or option in " ".join(image.attrs["Config"].get("Cmd") or []):
            found.append(image)
    return found


@pytest.fixture
def docker_engine() -> None:
    """Skips the test on a machine whose Docker engine does not answer."""
    try:
        docker_client().ping()
    except Exception as exc:  # pragma: no cover - machines without docker
        pytest.skip(f"no Docker engine: {exc}")


@pytest.fixture
def unique(request: pytest.FixtureRequest) -> Iterator[str]:
    """A server option no other run uses (so a warm image of its own), removed after."""
    service = request.node.callspec.params["service"]
    option = _unique_option(service)
    yield option
    for image in _warm_images(option):
        docker_client().images.remove(image.id, force=True)  # type: ignore[attr-defined]


def _options(service: str, option: str, cache_dir: Path, **extra: object) -> ServerOptions:
    spec = spec_for(service).configured({"options": (option,)})
    fields: dict[str, object] = {
        "image": IMAGES[service],
        "startup_timeout": 120,
        "session_id": "warmdockertest",
        "warm_dir": cache_dir,
        **extra,
    }
    return ServerOptions(spec=spec, **fields)  # type: ignore[arg-type]


@pytest.mark.usefixtures("docker_engine")
@pytest.mark.parametrize("service", ["postgres", "mysql"])
def test_second_run_starts_from_the_warm_image_with_a_new_password(
    pytester: pytest.Pytester,
    cache_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    service: str,
    unique: str,
) -> None:
    monkeypatch.setenv("INTEGRATION_BACKEND", "docker")
    monkeypatch.setenv(f"INTEGRATION_{service.upper()}_IMAGE", IMAGES[service])
    monkeypatch.setenv(f"INTEGRATION_{service.upper()}_OPTIONS", unique)
    monkeypatch.setenv("PIK_SERVICE", service)
    project = make_project(pytester.path / "app", STALE_PASSWORD_TESTS)

    monkeypatch.setenv("INTEGRATION_WARM_START", "false")
    off = project.run()
    assert off.returncode == 0, off.stdout
    assert not _warm_images(unique), "integration_warm_start=false built a warm image"

    monkeypatch.delenv("INTEGRATION_WARM_START")
    # Built after a kept server's cold start: the image must not make later servers kept.
    monkeypatch.setenv("INTEGRATION_REUSE", "1")
    first = project.run()
    monkeypatch.delenv("INTEGRATION_REUSE")
    assert first.returncode == 0, first.stdout
    assert "(warm data dir)" not in first.stdout
    (image,) = _warm_images(unique)  # built by the end of the run
    env = dict(e.split("=", 1) for e in image.attrs["Config"]["Env"])  # type: ignore[attr-defined]
    secret = "POSTGRES_PASSWORD" if service == "postgres" else "MYSQL_ROOT_PASSWORD"
    assert env.get(secret) == "", "the builder's password is left in the image"
    # Labels a later container inherits: none that would make it kept (or another's).
    assert not [k for k in image.labels if k.endswith(".reuse")]  # type: ignore[attr-defined]
    # Its builder is gone (this key's only: other sessions may be building theirs).
    key = image.labels[WARM_LABEL]  # type: ignore[attr-defined]
    assert not docker_client().containers.list(all=True, filters={"label": f"{WARM_LABEL}={key}"})

    old = project.reports()[-1]["password"]
    monkeypatch.setenv("PIK_OLD_PASSWORD", old)
    second = project.run("-rA")
    assert second.returncode == 0, second.stdout
    assert "(warm data dir)" in second.stdout
    assert project.reports()[-1]["password"] != old
    # The second run's server (not kept) is gone with the run.
    assert not docker_client().containers.list(all=True, filters={"ancestor": image.id})  # type: ignore[attr-defined]


@pytest.mark.usefixtures("docker_engine")
@pytest.mark.parametrize("service", ["postgres"])
def test_the_key_follows_image_and_settings(cache_dir: Path, service: str, unique: str) -> None:
    client = docker_client()
    warm = warm_image_for(client, _options(service, unique, cache_dir))
    assert warm is not None
    assert warm.tag.startswith("pytest-integration-kit/warm-postgres:")
    other_option = warm_image_for(client, _options(service, unique + "x", cache_dir))
    other_image = warm_image_for(
        client, _options(service, unique, cache_dir, image="pytest-integration-kit/postgis:15")
    )
    keys = {warm.key, getattr(other_option, "key", None), getattr(other_image, "key", None)}
    assert len(keys) == 3
    # No warm image where none can help: warm start off (no cache dir), a fixed password.
    assert warm_image_for(client, _options(service, unique, cache_dir, warm_dir=None)) is None
    assert warm_image_for(client, _options(service, unique, cache_dir, password="pw")) is None


@pytest.mark.usefixtures("docker_engine")
@pytest.mark.parametrize("service", ["postgres"])
def test_a_broken_warm_image_falls_back_to_a_cold_start_and_is_rebuilt(
    cache_dir: Path, service: str, unique: str
) -> None:
    client = docker_client()
    owner = {
        "pytest-integration-kit.owner-pid": "1",
        "pytest-integration-kit.owner-host": "warmdockertest",
        "pytest-integration-kit.owner-started": "0",
    }
    options = _options(
        service, unique, cache_dir, labels={**owner, "pytest-integration-kit.reuse": "x"}
    )
    warm = warm_image_for(client, options)
    assert warm is not None
    # An image that cannot run PostgreSQL at all, under the warm image's tag.
    redis = client.images.get("pytest-integration-kit/redis:7")
    redis.tag(warm.repository, warm.key)
    backend = DockerBackend()
    server = backend.start(options)
    try:
        assert not server.warm
        assert spec_for(service).probe(server.endpoint, timeout=10)
        # The builder is reaped like the run's servers (session and owner labels), and
        # passes no reuse label on to the image.
        builder_labels = server.run_kwargs["labels"]  # type: ignore[attr-defined]
        assert builder_labels == {
            "pytest-integration-kit.session": "warmdockertest",
            "pytest-integration-kit.service": service,
            **owner,
        }
    finally:
        server.stop()
    backend.finish()
    rebuilt = client.images.get(warm.tag)
    assert rebuilt.id != redis.id
    assert rebuilt.labels[WARM_BASE_LABEL] == client.images.get(IMAGES[service]).id
    again = backend.start(options)
    try:
        assert again.warm
        assert spec_for(service).probe(again.endpoint, timeout=10)
    finally:
        again.stop()


@pytest.mark.usefixtures("docker_engine")
@pytest.mark.parametrize("service", ["postgres"])
def test_one_builder_at_a_time(cache_dir: Path, service: str, unique: str) -> None:
    """A session that finds another building the image goes without (no race, no wait)."""
    warm = warm_image_for(docker_client(), _options(service, unique, cache_dir))
    assert isinstance(warm, WarmImage)
    lock = FileLock(cache_dir / "warm" / f"docker-{warm.key}.lock")
    (cache_dir / "warm").mkdir(mode=0o700, exist_ok=True)
    held = threading.Event()
    release = threading.Event()

    def other_session() -> None:
        with lock:
            held.set()
            release.wait(30)

    thread = threading.Thread(target=other_session)
    thread.start()
    try:
        assert held.wait(10)
        assert warm.build({"labels": {}, "ports": {}}, lambda c, creds: None) is False
        assert not warm.present()
    finally:
        release.set()
        thread.join()


@pytest.mark.usefixtures("docker_engine")
def test_warm_remove_clears_both_caches(cache_dir: Path) -> None:
    """`python -m pytest_integration_kit warm remove`: the local copies and warm images."""
    client = docker_client()
    marker = secrets.token_hex(6)
    dockerfile = f"FROM pytest-integration-kit/redis:7\nLABEL {WARM_LABEL}={marker}\n"
    image, _ = client.images.build(
        fileobj=io.BytesIO(dockerfile.encode()),
        tag=f"pytest-integration-kit/warm-test:{marker}",
        network_mode="none",
        rm=True,
    )
    (cache_dir / "warm" / "postgres-x" / "data").mkdir(parents=True)
    try:
        result = subprocess.run(
            [sys.executable, "-m", "pytest_integration_kit", "warm", "remove"],
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        assert "warm image(s)" in result.stdout
        assert not (cache_dir / "warm").exists()
        assert not client.images.list(filters={"label": f"{WARM_LABEL}={marker}"})
    finally:
        with contextlib.suppress(Exception):
            client.images.remove(image.id, force=True)


def _warm_image_built(options: ServerOptions) -> tuple[DockerBackend, object, WarmImage, object]:
    """A cold start of ``options``' server and the warm image it leaves: the backend,
    the (stopped) cold server, the warm image and its docker-py image."""
    backend = DockerBackend()
    cold = backend.start(options)
    cold.stop()
    backend.finish()
    warm = warm_image_for(docker_client(), options)
    assert warm is not None
    assert warm.present()
    return backend, cold, warm, docker_client().images.get(warm.tag)


def _replace_warm_image(warm: WarmImage, dockerfile: str, built: object) -> None:
    """Tag an image made by ``dockerfile`` from ``built`` (the warm image) as ``warm``."""
    docker_client().images.build(
        fileobj=io.BytesIO(dockerfile.format(base=built.id).encode()),  # type: ignore[attr-defined]
        tag=warm.tag,
        network_mode="none",
        rm=True,
    )


#: Images made from a warm image, tagged as it: how a user's image may differ.
NO_ENTRYPOINT = "FROM {base}\nUSER postgres\nENTRYPOINT []\n"
NO_SINGLE_USER = (
    "FROM {base}\n"
    'RUN printf \'#!/bin/sh\\n[ "$2" = --single ] && exit 1\\nexec docker-entrypoint.sh "$@"\\n\''
    " > /usr/local/bin/no-single.sh && chmod 755 /usr/local/bin/no-single.sh\n"
    'ENTRYPOINT ["no-single.sh"]\n'
)


def _execs(server: object, since: float) -> list[str]:
    """The ``docker exec`` commands run in a server's container (the engine's events)."""
    container_id = server.container_id  # type: ignore[attr-defined]
    events = docker_client().events(
        since=int(since),
        until=int(time.time()) + 1,
        filters={"container": container_id, "event": "exec_create"},
        decode=True,
    )
    return [str(event.get("Action", "")) for event in events]


@pytest.mark.usefixtures("docker_engine")
@pytest.mark.parametrize("service", ["postgres"])
def test_postgres_warm_start_sets_the_password_without_docker_exec(
    cache_dir: Path, service: str, unique: str
) -> None:
    """The launcher sets the password in single-user mode before the server starts; an
    image without an entrypoint, or whose entrypoint fails that step, gets it over
    ``docker exec`` instead. Each start logs in with its own new password."""
    options = _options(service, unique, cache_dir)
    spec = spec_for(service)
    backend, cold, warm, built = _warm_image_built(options)

    def start(expect_exec: bool) -> None:
        since = time.time()
        server = backend.start(options)
        try:
            assert server.warm
            assert bool(_execs(server, since)) is expect_exec
            assert spec.probe(server.endpoint, timeout=10)
            assert server.endpoint.password != cold.endpoint.password
        finally:
            server.stop()

    start(expect_exec=False)
    for dockerfile in (NO_ENTRYPOINT, NO_SINGLE_USER):
        _replace_warm_image(warm, dockerfile, built)
        start(expect_exec=True)
    assert warm.present(), "a fallback start discarded the warm image"


#: The server off the launcher's PATH, the entrypoint (which finds it) in place.
SERVER_OFF_PATH = (
    "FROM {base}\n"
    "RUN printf '#!/bin/sh\\nPATH=/usr/sbin:$PATH exec docker-entrypoint.sh \"$@\"\\n'"
    " > /usr/local/bin/with-sbin.sh && chmod 755 /usr/local/bin/with-sbin.sh\n"
    "ENV PATH=/usr/local/bin:/usr/bin:/bin\n"
    'ENTRYPOINT ["with-sbin.sh"]\n'
)


@pytest.mark.usefixtures("docker_engine")
@pytest.mark.parametrize("service", ["mysql"])
def test_mysql_warm_start_runs_the_server_itself(
    cache_dir: Path, service: str, unique: str
) -> None:
    """From a warm image the server starts without the image's entrypoint (which would
    only run it with --help and run itself again first), as the mysql user; an image
    whose server the launcher does not find starts through its entrypoint. Each start
    logs in with a password of its own."""
    client = docker_client()
    options = _options(service, unique, cache_dir)
    spec = spec_for(service)
    backend, cold, warm, built = _warm_image_built(options)

    def start(*, direct: bool) -> None:
        server = backend.start(options)
        try:
            assert server.warm
            container = client.containers.get(server.container_id)  # type: ignore[attr-defined]
            log = container.logs().decode(errors="replace")
            assert ("[Entrypoint]" not in log) is direct, log
            code, out = container.exec_run(["ps", "-o", "user=,comm=", "-p", "1"])
            assert code == 0
            assert out.decode().split() == ["mysql", "mariadbd"]
            assert spec.probe(server.endpoint, timeout=10)
            assert server.endpoint.password != cold.endpoint.password
        finally:
            server.stop()

    start(direct=True)
    _replace_warm_image(warm, SERVER_OFF_PATH, built)
    start(direct=False)
    assert warm.present(), "the entrypoint's start discarded the warm image"
