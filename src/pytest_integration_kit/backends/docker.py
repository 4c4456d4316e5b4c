"""The docker backend: containers through testcontainers, without Ryuk.

Every testcontainers import lives in this module and happens lazily, so the plugin
loads (and the other backends work) without the ``docker`` extra.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import threading
import time
from typing import TYPE_CHECKING, Any

from pytest_integration_kit.backends.base import (
    Backend,
    RunningServer,
    ServerOptions,
    ServerStopError,
    mask,
)
from pytest_integration_kit.backends.docker_host_network import (
    HostLaunch,
    OpenOnLoopback,
    PortTaken,
    engine_shares_network,
    port_taken,
)
from pytest_integration_kit.backends.docker_route import direct_endpoint, engine_address
from pytest_integration_kit.backends.labels import LABEL_PREFIX, SESSION_LABEL
from pytest_integration_kit.backends.ports import PORT_ATTEMPTS, free_port
from pytest_integration_kit.errors import BackendUnavailable, ServerStartError
from pytest_integration_kit.services.readiness import wait_until_ready

if TYPE_CHECKING:
    from collections.abc import Callable

    from pytest_integration_kit.backends.warm_images import WarmImage
    from pytest_integration_kit.services.endpoint import Endpoint
    from pytest_integration_kit.services.launch import Credentials
    from pytest_integration_kit.services.spec import ServiceSpec

__all__ = [
    "LABEL_PREFIX",
    "SESSION_LABEL",
    "DockerBackend",
    "DockerServer",
    "engine_address",
    "preload_docker_modules",
    "remove_container",
]

#: How long to wait for the engine to answer a ping before calling it unreachable.
PING_TIMEOUT = 5


#: Held while docker-py is first imported: the reaper's thread may import it too.
_PRELOAD_LOCK = threading.Lock()


def preload_docker_modules() -> None:
    """Import docker-py and testcontainers now, in the calling thread.

    Servers start in threads, and the reaper runs in one; two threads importing
    docker-py for the first time at once can see a half-initialised ``requests``
    ("module 'requests' has no attribute 'exceptions'"). Call this from the main thread
    before starting them. Without the docker extra it does nothing.
    """
    with _PRELOAD_LOCK, contextlib.suppress(ImportError):
        import docker  # noqa: PLC0415
        import docker.errors  # noqa: F401,PLC0415
        import testcontainers.core.config  # noqa: PLC0415
        import testcontainers.core.container  # noqa: F401,PLC0415


def _pull(client: Any, image: str, progress: Callable[[str], None] | None) -> None:
    """Pull ``image``, telling ``progress`` how far it got (every half second at most)."""
    from docker.utils import parse_repository_tag  # noqa: PLC0415

    repository, tag = parse_repository_tag(image)
    if progress is not None:
        progress(f"pulling {image} (not present on the Docker engine)…")
    layers: dict[str, tuple[int, int]] = {}
    shown = time.monotonic()
    for event in client.api.pull(repository, tag=tag or "latest", stream=True, decode=True):
        if "error" in event:
            raise ServerStartError(str(event["error"]))
        detail = event.get("progressDetail") or {}
        if event.get("id") and detail.get("total"):
            layers[str(event["id"])] = (int(detail.get("current", 0)), int(detail["total"]))
        if progress is not None and layers and time.monotonic() - shown > 0.5:
            done = sum(current for current, _ in layers.values()) / 1e6
            total = sum(size for _, size in layers.values()) / 1e6
            progress(f"pulling {image}: {done:.0f}/{total:.0f} MB")
            shown = time.monotonic()
    client.images.get(image)  # raises ImageNotFound if the pull brought nothing


class DockerServer(RunningServer):
    def __init__(self, container: Any, endpoint: Endpoint, seconds_to_ready: float) -> None:
        self.container = container
        self.endpoint = endpoint
        self.seconds_to_ready = seconds_to_ready
        self._stopped = False
        #: How a builder of this server's warm image is run and reached (see start).
        self.run_kwargs: dict[str, Any] = {}
        self.builder_endpoint: Callable[[Any, Credentials], Endpoint] = _no_endpoint

    @property
    def container_id(self) -> str:
        return str(self.container.get_wrapped_container().id)  # every testcontainers 4.x

    def stop(self) -> None:
        if self._stopped:
            return
        remove_container(self.container.get_wrapped_container(), self.container_id)
        self._stopped = True

    def log_tail(self, lines: int = 40) -> str:
        return _container_log_tail(self.container, lines, self.endpoint.password)


def _no_endpoint(container: Any, credentials: Credentials) -> Endpoint:
    raise NotImplementedError


class DockerBackend(Backend):
    name = "docker"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._client: Any = None
        self._engine_error: str | None = None
        #: Threads building warm images (see :meth:`finish`).
        self._builders: list[threading.Thread] = []

    def _engine(self) -> Any:
        """A docker client whose engine answered a ping, or raise BackendUnavailable."""
        with self._lock:
            if self._client is not None:
                return self._client
            if self._engine_error is not None:
                raise BackendUnavailable(self._engine_error)
            try:
                import docker  # noqa: PLC0415 - the docker extra is optional
                import testcontainers  # noqa: F401,PLC0415
            except ImportError:
                self._engine_error = (
                    "the docker backend needs testcontainers, which is not installed: "
                    "pip install 'pytest-integration-kit[docker]'"
                )
                raise BackendUnavailable(self._engine_error) from None
            where = os.environ.get("DOCKER_HOST") or "the default socket"
            try:
                client = docker.from_env(timeout=PING_TIMEOUT)
                client.ping()
            except Exception as exc:
                self._engine_error = (
                    f"the Docker engine did not answer at {where} ({_one_line(exc)}). Start "
                    "Docker or fix DOCKER_HOST, or choose another backend with "
                    "integration_backend / INTEGRATION_BACKEND (local, url)"
                )
                raise BackendUnavailable(self._engine_error) from None
            self._client = client
            return client

    def unavailable_reason(self, options: ServerOptions) -> str | None:
        try:
            client = self._engine()
        except BackendUnavailable as exc:
            return str(exc)
        import docker.errors  # noqa: PLC0415

        try:
            client.images.get(options.image)
        except docker.errors.ImageNotFound:
            try:
                _pull(client, options.image, options.progress)
            except Exception as exc:
                return (
                    f"the image {options.image} is not present and could not be pulled "
                    f"({_one_line(exc)}); build or load it, or set "
                    f"integration_{options.spec.name}_image / "
                    f"INTEGRATION_{options.spec.name.upper()}_IMAGE to one that is"
                )
        except Exception as exc:
            return f"the Docker engine could not inspect {options.image}: {_one_line(exc)}"
        return None

    def start(self, options: ServerOptions) -> RunningServer:
        reason = self.unavailable_reason(options)
        if reason is not None:
            raise BackendUnavailable(reason)
        from pytest_integration_kit.backends.warm_images import warm_image_for  # noqa: PLC0415

        warm = warm_image_for(self._engine(), options)
        if warm is not None and warm.present():
            try:
                return self._start_on_a_free_port(options, warm)
            except Exception:  # the engine refused it, the server did not start from it…
                warm.discard()  # a broken image: start cold, and build it again
        server = self._start_on_a_free_port(options, None)
        if warm is not None:
            thread = warm.build_later(server.run_kwargs, server.builder_endpoint)
            with self._lock:
                self._builders.append(thread)
        return server

    def finish(self, timeout: float = 600) -> None:
        """Wait (at most ``timeout`` seconds in all) for warm images being built."""
        deadline = time.monotonic() + timeout
        with self._lock:
            builders, self._builders = self._builders, []
        for thread in builders:
            thread.join(max(0.0, deadline - time.monotonic()))

    def _start_on_a_free_port(self, options: ServerOptions, warm: WarmImage | None) -> DockerServer:
        """:meth:`_start`, again on another port while a host-network server finds its
        port taken (see docker_host_network)."""
        try:
            for _ in range(PORT_ATTEMPTS - 1):
                with contextlib.suppress(PortTaken):
                    return self._start(options, warm)
            return self._start(options, warm)
        except OpenOnLoopback:
            return self._start(dataclasses.replace(options, host_network=False), warm)

    def _host_network(self, options: ServerOptions, client: Any, host: str) -> HostLaunch | None:
        """How to run the container in this machine's network, or None: on the bridge
        network (see docker_host_network)."""
        spec = options.spec
        if not options.host_network or host != "127.0.0.1" or spec.extra_ports:
            return None
        port = free_port()
        added = spec.host_network(port)
        if added is None or not engine_shares_network(client):
            return None
        return HostLaunch(port, *added)

    def _start(self, options: ServerOptions, warm: WarmImage | None) -> DockerServer:
        """Start a container from ``options.image`` (cold) or from ``warm``'s image."""
        from testcontainers.core.config import testcontainers_config  # noqa: PLC0415

        from pytest_integration_kit.backends.warm_images import ContainerExec  # noqa: PLC0415

        spec = options.spec
        client = self._engine()
        # Ryuk cannot be pulled everywhere and is forbidden in many CI setups; the
        # lifecycle reaps by label instead. Where asked for and present, Ryuk also removes
        # the containers as soon as this process dies.
        testcontainers_config.ryuk_disabled = not (
            options.ryuk and _image_present(client, testcontainers_config.ryuk_image)
        )
        host, bind_ip = engine_address(client.api.base_url, os.environ.get("DOCKER_HOST"))
        credentials = spec.credentials(options.password)
        started = time.monotonic()
        ports: dict[str, Any] = {
            f"{number}/tcp": (bind_ip,)
            for number in (spec.container_port, *spec.extra_ports.values())
        }
        labels = {SESSION_LABEL: options.session_id, f"{LABEL_PREFIX}.service": spec.name}
        run_kwargs: dict[str, Any] = {"labels": {**labels, **options.labels}}
        launch = self._host_network(options, client, host)
        # The builder stays on the bridge network: nothing waits for it.
        builder_kwargs = {"labels": _builder_labels(run_kwargs["labels"]), "ports": dict(ports)}
        if launch is not None:
            ports, run_kwargs = {}, {**run_kwargs, "network_mode": "host"}
        container = self._container(options, credentials, warm, ports, run_kwargs, launch=launch)
        try:
            container.start()
            wrapped = container.get_wrapped_container()
            wrapped.reload()
            endpoint = (
                launch.endpoint(spec, credentials, self.name)
                if launch is not None
                else self._endpoint(spec, wrapped, credentials, host)
            )

            def is_running() -> bool:
                wrapped.reload()
                return wrapped.status in ("created", "running")

            context = ContainerExec(wrapped)

            def probe(seconds: float) -> str:
                return spec.ready(endpoint, seconds, context)

            if warm is not None:
                probe = container.ready_probe(
                    probe, lambda: spec.warm_unseal(context, credentials, options.startup_timeout)
                )
            version = wait_until_ready(
                probe,
                what=f"{spec.title} (docker, {warm.tag if warm else options.image})",
                timeout=options.startup_timeout,
                log_tail=lambda: _container_log_tail(container, 40, credentials.password),
                is_running=is_running,
            )
            endpoint = dataclasses.replace(endpoint, version=version)
            if launch is not None:
                launch.check_login(spec, endpoint, options.startup_timeout)
            elif options.direct and (host, bind_ip) == ("127.0.0.1", "127.0.0.1"):
                endpoint = direct_endpoint(endpoint, spec, wrapped.attrs)
            spec.after_start(endpoint, f"docker image {options.image}")
        except BaseException as exc:
            # Nothing half-started is left behind.
            try:
                if container._container is not None:
                    container.get_wrapped_container().remove(force=True, v=True)
            except Exception:  # noqa: S110
                pass
            if launch is not None and port_taken(exc):
                raise PortTaken(str(exc)) from None
            if isinstance(exc, (ServerStartError, BackendUnavailable, KeyboardInterrupt)):
                raise
            raise ServerStartError(
                f"{spec.title} (docker, {options.image}) failed to start: "
                f"{mask(_one_line(exc), credentials.password)}"
            ) from None
        server = DockerServer(container, endpoint, time.monotonic() - started)
        server.warm = warm is not None
        server.run_kwargs = builder_kwargs
        server.builder_endpoint = lambda built, creds: self._endpoint(spec, built, creds, host)
        return server

    def _container(
        self,
        options: ServerOptions,
        credentials: Credentials,
        warm: WarmImage | None,
        ports: dict[str, Any],
        run_kwargs: dict[str, Any],
        *,
        launch: HostLaunch | None,
    ) -> Any:
        """The container to start: a testcontainers one (cold), or one created from the
        warm image (started once it has the files that set this session's password);
        ``launch``: in this machine's network, its environment and arguments added."""
        from testcontainers.core.container import DockerContainer  # noqa: PLC0415

        spec = options.spec
        if warm is not None:
            return warm.create(
                credentials, ports, run_kwargs, launch.added if launch is not None else None
            )
        # Through the methods every testcontainers 4.x has: before 4.9 constructor
        # keywords land in the run kwargs, which with_kwargs below replaces.
        container = DockerContainer(options.image)
        extra_env, extra_args = launch.added if launch is not None else ({}, [])
        command = spec.container_command(credentials)
        if command is not None or extra_args:
            container.with_command([*(command or []), *extra_args])  # a list, as it is
        for key, value in {**spec.container_env(credentials), **extra_env}.items():
            container.with_env(key, value)
        # A (host_ip,) binding publishes on that address with a random host port;
        # testcontainers types the value as a port, docker-py takes the tuple.
        container.ports.update(ports)
        if hasattr(container, "tmpfs"):  # testcontainers >= 4.9 passes it to docker
            container.tmpfs.update(spec.container_tmpfs())
        elif spec.container_tmpfs():
            run_kwargs["tmpfs"] = spec.container_tmpfs()
        container.with_kwargs(**run_kwargs)
        return container

    def _endpoint(
        self, spec: ServiceSpec, container: Any, credentials: Credentials, host: str
    ) -> Endpoint:
        """The endpoint of a started (reloaded) ``container``: its published ports."""
        published = container.attrs["NetworkSettings"]["Ports"]
        port = int(published[f"{spec.container_port}/tcp"][0]["HostPort"])
        endpoint = spec.endpoint(host=host, port=port, credentials=credentials, backend=self.name)
        if spec.extra_ports:
            endpoint = dataclasses.replace(
                endpoint,
                ports={
                    name: int(published[f"{number}/tcp"][0]["HostPort"])
                    for name, number in spec.extra_ports.items()
                },
            )
        return endpoint


def _builder_labels(labels: dict[str, str]) -> dict[str, str]:
    """The labels of a warm image's builder. docker commit copies them into the image,
    and every later container inherits those its own labels do not override: only the
    ones every container of a run sets (never the reuse label of a kept server)."""
    return {
        key: value
        for key, value in labels.items()
        if key in (SESSION_LABEL, f"{LABEL_PREFIX}.service")
        or key.startswith(f"{LABEL_PREFIX}.owner-")
    }


def remove_container(container: Any, container_id: str) -> None:
    """Remove ``container`` and its volumes; one already gone is fine.

    Raises :class:`ServerStopError` when the engine cannot be asked (it went away).
    """
    import docker.errors  # noqa: PLC0415 - the docker extra is optional

    try:
        container.remove(force=True, v=True)
    except docker.errors.NotFound:
        return
    except docker.errors.APIError as exc:
        if exc.status_code == 409 and "in progress" in str(exc):  # removed by someone else
            return
        raise ServerStopError(
            f"container {container_id[:12]} could not be removed: {_one_line(exc)}"
        ) from None
    except Exception as exc:
        raise ServerStopError(
            f"container {container_id[:12]} could not be removed: {_one_line(exc)}"
        ) from None


def _image_present(client: Any, image: str) -> bool:
    try:
        client.images.get(image)
    except Exception:
        return False
    return True


def _container_log_tail(container: Any, lines: int, secret: str) -> str:
    try:
        raw = container.get_wrapped_container().logs(tail=lines)
    except Exception as exc:
        return f"(no container log: {_one_line(exc)})"
    return mask(raw.decode(errors="replace"), secret) or "(the container log is empty)"


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
