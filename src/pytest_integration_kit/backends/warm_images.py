"""Warm docker start: an image whose data directory is already initialised.

An image's entrypoint spends most of a cold start initialising the data directory
(``initdb``, ``mariadb-install-db``, a temporary server for the set-up). The official
entrypoints skip all of it when the data directory is initialised already. So after a
service's first cold start a *builder* container is run from the same image with its
data directory at :attr:`ServiceSpec.warm_data_dir` (outside the image's volumes and
tmpfs mounts, which ``docker commit`` leaves out); once it is ready, its password is
removed, it is stopped cleanly and committed to a local image tagged by a hash of the
base image's id and the environment and command that shaped the initialisation. Later
starts run that image and set the session's password before the first probe.

The builder runs in a background thread with a low CPU share, after the session's own
server is ready, so the first run's first test does not wait for it; the session waits
for it (bounded) at its end. Its password is random and never stored; the committed
image holds no password that logs in. Two sessions never build the same image at once
(a file lock in the cache dir; the loser goes without). An image that fails to start a
server is removed and the start falls back to a cold one.
"""

from __future__ import annotations

import contextlib
import io
import secrets
import tarfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_integration_kit.services.readiness import login_refused
from pytest_integration_kit.services.spec import ServerContext

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from pytest_integration_kit.backends.base import ServerOptions
    from pytest_integration_kit.services.launch import Credentials
    from pytest_integration_kit.services.spec import ServiceSpec

__all__ = ["WARM_LABEL", "WarmImage", "put_files", "warm_image_for"]

#: Bump when what a warm image holds, or how it is made, changes.
LAYOUT = 1
LABEL_PREFIX = "pytest-integration-kit"
#: On a warm image: its key. On a builder container: the key it builds.
WARM_LABEL = f"{LABEL_PREFIX}.warm"
#: On a warm image: the image reference it was made from, and that image's id.
WARM_OF_LABEL = f"{LABEL_PREFIX}.warm-of"
WARM_BASE_LABEL = f"{LABEL_PREFIX}.warm-base"
#: The builder gets this CPU share (the default is 1024): it runs in idle time.
BUILDER_CPU_SHARES = 2
#: Seconds the engine may take to commit a data directory (100+ MB for MySQL).
COMMIT_TIMEOUT = 300


def warm_image_for(client: Any, options: ServerOptions) -> WarmImage | None:
    """The warm image ``options`` would start from, or None when there is none to
    have (warm start off, a service with nothing to initialise, a fixed password)."""
    spec = options.spec
    if options.warm_dir is None or spec.warm_data_dir is None or options.password is not None:
        return None
    try:
        base_id = str(client.images.get(options.image).id)
    except Exception:
        return None
    from pytest_integration_kit.lifecycle.records import digest  # noqa: PLC0415

    placeholder = spec.credentials("<password>")
    env, command = spec.warm_container(placeholder, cached=False)
    key = digest(
        LAYOUT,
        type(spec).__module__,
        type(spec).__qualname__,
        base_id,
        sorted(env.items()),
        command,
        spec.warm_data_dir,
    )
    return WarmImage(client, options, key, base_id)


class WarmImage:
    """One warm image: whether it is there, starting from it, building it."""

    def __init__(self, client: Any, options: ServerOptions, key: str, base_id: str) -> None:
        self.client = client
        self.base_id = base_id
        self.options = options
        self.spec: ServiceSpec = options.spec
        self.key = key
        self.repository = f"{LABEL_PREFIX}/warm-{self.spec.name}"
        self.tag = f"{self.repository}:{key}"
        #: The image's entrypoint, as :meth:`present` found it.
        self.entrypoint: list[str] = []

    def present(self) -> bool:
        try:
            image = self.client.images.get(self.tag)
        except Exception:
            return False
        self.entrypoint = list(image.attrs.get("Config", {}).get("Entrypoint") or [])
        return True

    def create(
        self,
        credentials: Credentials,
        ports: dict[str, Any],
        run_kwargs: dict[str, Any],
        added: tuple[dict[str, str], list[str]] | None = None,
    ) -> Created:
        """A container of this image, created, not started (:meth:`Created.start`): the
        spec's launcher in place of the image's entrypoint, when it has one for it;
        ``added``: environment and arguments to add (the spec's ``host_network``)."""
        spec = self.spec
        env, args = spec.warm_container(credentials, cached=True)
        if added is not None:
            env, args = {**env, **added[0]}, [*args, *added[1]]
        launch = spec.warm_launch(credentials, self.entrypoint, args) if self.entrypoint else None
        if launch is not None:
            env = {**env, **launch.env}
            run_kwargs = {**run_kwargs, "entrypoint": ["/bin/sh", "-c", launch.script]}
            args = []  # the script has them; an entrypoint given, the image's CMD is unused
        container = self.client.containers.create(
            self.tag,
            args or None,
            environment=env,
            ports=ports,
            tmpfs=spec.container_tmpfs(),
            **run_kwargs,
        )
        return Created(container, spec.warm_files(credentials), launched=launch is not None)

    def discard(self) -> None:
        """Remove the image (it failed to start a server): the next start rebuilds it."""
        with contextlib.suppress(Exception):
            self.client.images.remove(self.tag, force=True)

    def build_later(
        self, run_kwargs: dict[str, Any], endpoint_for: Callable[[Any, Credentials], Any]
    ) -> threading.Thread:
        """Build the image in a daemon thread (see the module docstring)."""
        thread = threading.Thread(
            target=self._build_quietly,
            args=(run_kwargs, endpoint_for),
            name=f"integration-warm-{self.spec.name}",
            daemon=True,
        )
        thread.start()
        return thread

    def _build_quietly(
        self, run_kwargs: dict[str, Any], endpoint_for: Callable[[Any, Credentials], Any]
    ) -> None:
        # A failed build costs nothing but the next run's warm start: never the run.
        with contextlib.suppress(Exception):
            self.build(run_kwargs, endpoint_for)

    def build(
        self, run_kwargs: dict[str, Any], endpoint_for: Callable[[Any, Credentials], Any]
    ) -> bool:
        """Build the image unless it is there or another process is building it; True
        when this call committed it."""
        from filelock import FileLock, Timeout  # noqa: PLC0415

        from pytest_integration_kit.lifecycle.paths import private_dir  # noqa: PLC0415

        assert self.options.warm_dir is not None
        locks = private_dir(Path(self.options.warm_dir) / "warm", 0o700)
        lock = FileLock(locks / f"docker-{self.key}.lock", timeout=0)
        try:
            lock.acquire()
        except Timeout:
            return False  # another session builds it
        try:
            if self.present():
                return False
            return self._build(run_kwargs, endpoint_for)
        finally:
            lock.release()

    def _build(
        self, run_kwargs: dict[str, Any], endpoint_for: Callable[[Any, Credentials], Any]
    ) -> bool:
        import docker  # noqa: PLC0415 - the docker extra is optional

        # Its own client: a commit takes longer than the backend client's timeout.
        slow = docker.from_env(timeout=COMMIT_TIMEOUT)
        try:
            return self._run_builder(slow, run_kwargs, endpoint_for)
        finally:
            slow.close()

    def _run_builder(
        self,
        slow: Any,
        run_kwargs: dict[str, Any],
        endpoint_for: Callable[[Any, Credentials], Any],
    ) -> bool:
        from pytest_integration_kit.services.readiness import wait_until_ready  # noqa: PLC0415

        spec = self.spec
        # Random, held only here: the committed image keeps no password that logs in.
        credentials = spec.credentials(secrets.token_urlsafe(24))
        env, command = spec.warm_container(credentials, cached=False)
        timeout = self.options.startup_timeout
        labels = {**run_kwargs.get("labels", {}), WARM_LABEL: self.key}
        container = slow.containers.run(
            self.options.image,
            command or None,
            detach=True,
            environment=env,
            ports=run_kwargs["ports"],
            labels=labels,
            cpu_shares=BUILDER_CPU_SHARES,
        )
        try:
            container.reload()
            endpoint = endpoint_for(container, credentials)
            context = ContainerExec(container)

            def is_running() -> bool:
                container.reload()
                return container.status in ("created", "running")

            wait_until_ready(
                lambda seconds: spec.ready(endpoint, seconds, context),
                what=f"{spec.title} (docker, warm image builder)",
                timeout=timeout,
                log_tail=lambda: "",
                is_running=is_running,
            )
            spec.warm_seal(context, timeout)
            container.stop(timeout=30)  # the image's stop signal: a clean shutdown
            blank = [f"ENV {name}=" for name, value in env.items() if value == credentials.password]
            container.commit(
                self.repository,
                self.key,
                message=f"pytest-integration-kit: {spec.title} data directory initialised",
                changes=[
                    *blank,
                    f'LABEL "{WARM_LABEL}"="{self.key}" "{WARM_OF_LABEL}"="{self.options.image}" '
                    f'"{WARM_BASE_LABEL}"="{self.base_id}"',
                ],
            )
        finally:
            with contextlib.suppress(Exception):
                container.remove(force=True, v=True)
        self._remove_older()
        return True

    def _remove_older(self) -> None:
        """Warm images made from an earlier version of the same image reference (it was
        pulled or rebuilt since) are of no further use; one a container uses stays.
        Those of other settings stay: two projects may use the same image."""
        with contextlib.suppress(Exception):
            for image in self.client.images.list(
                filters={"label": f"{WARM_OF_LABEL}={self.options.image}"}
            ):
                if image.labels.get(WARM_BASE_LABEL) != self.base_id:
                    with contextlib.suppress(Exception):
                        self.client.images.remove(image.id)


class Created:
    """A container created from a warm image with docker-py, as the docker backend sees
    a testcontainers one; ``files`` go into it before it starts."""

    def __init__(self, container: Any, files: Mapping[str, bytes], *, launched: bool) -> None:
        self._container = container
        self.files = files
        #: Whether the spec's launcher sets the password (else :meth:`ready_probe` does).
        self.launched = launched

    def get_wrapped_container(self) -> Any:
        return self._container

    def start(self) -> None:
        put_files(self._container, dict(self.files))
        self._container.start()

    def ready_probe(
        self, probe: Callable[[float], str], unseal: Callable[[], None]
    ) -> Callable[[float], str]:
        """``probe`` for this container, the password set: by ``unseal`` (the spec's
        ``warm_unseal``) first when no launcher set it, or on the first refused login
        when the launcher's step failed (an entrypoint that did not take it)."""
        if not self.launched:
            unseal()
            return probe
        unsealed = False

        def probe_or_unseal(seconds: float) -> str:
            nonlocal unsealed
            try:
                return probe(seconds)
            except Exception as exc:
                if unsealed or not login_refused(exc):
                    raise
                unsealed = True
                unseal()
                return probe(seconds)

        return probe_or_unseal


class ContainerExec(ServerContext):
    """Readiness's view of a container: its log, and commands run in it."""

    available = True

    def __init__(self, container: Any) -> None:
        self.container = container

    def log(self) -> str:
        return bytes(self.container.logs()).decode(errors="replace")

    def run(self, command: Sequence[str], timeout: float) -> tuple[int, str]:
        code, output = self.container.exec_run(list(command))
        return int(code), bytes(output or b"").decode(errors="replace")


def put_files(container: Any, files: dict[str, bytes]) -> None:
    """Put ``files`` (absolute path: content) into a created, not yet started container."""
    if not files:
        return
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for path, content in files.items():
            member = tarfile.TarInfo(path.lstrip("/"))
            member.size = len(content)
            member.mode = 0o644  # the server reads it as its own unprivileged user
            member.mtime = int(time.time())
            archive.addfile(member, io.BytesIO(content))
    if not container.put_archive("/", buffer.getvalue()):
        raise OSError("the Docker engine refused the files")
