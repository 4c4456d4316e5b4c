"""The local backend: the server binaries on this machine, in a temp dir, on a free port."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import subprocess
import tempfile
import time
from collections import deque
from pathlib import Path
from typing import IO, TYPE_CHECKING

from pytest_integration_kit.backends.base import Backend, RunningServer, ServerOptions, mask
from pytest_integration_kit.backends.local_runner import LocalRunner, RunAs
from pytest_integration_kit.backends.ports import (
    PORT_ATTEMPTS,
    free_port,
    port_in_use,
    says_port_taken,
)
from pytest_integration_kit.backends.workdirs import (
    SOCKETS_PREFIX,
    WORKDIR_PREFIX,
    orphaned_socket_dirs,
    remove_workdir,
    socket_dir,
    workdir_base,
)
from pytest_integration_kit.errors import BackendUnavailable, ServerStartError
from pytest_integration_kit.services.readiness import wait_until_ready
from pytest_integration_kit.services.spec import ServerContext

if TYPE_CHECKING:
    from collections.abc import Sequence

    from pytest_integration_kit.lifecycle.warm import WarmStart
    from pytest_integration_kit.services.endpoint import Endpoint
    from pytest_integration_kit.services.launch import Credentials
    from pytest_integration_kit.services.spec import ServiceSpec

__all__ = [
    "SOCKETS_PREFIX",
    "WORKDIR_PREFIX",
    "LocalBackend",
    "LocalRunner",
    "LocalServer",
    "RunAs",
    "orphaned_socket_dirs",
    "remove_workdir",
]


class LocalServer(RunningServer):
    def __init__(
        self,
        *,
        spec: ServiceSpec,
        process: subprocess.Popen[bytes],
        workdir: Path,
        log: Path,
        endpoint: Endpoint,
        seconds_to_ready: float,
    ) -> None:
        self.spec = spec
        self.process = process
        self.workdir = workdir
        self.log = log
        self.endpoint = endpoint
        self.seconds_to_ready = seconds_to_ready

    def stop(self) -> None:
        _terminate(self.process, self.spec.stop_signal)
        remove_workdir(self.workdir)

    def log_tail(self, lines: int = 40) -> str:
        return _tail(self.log, lines, self.endpoint.password)


class LocalBackend(Backend):
    name = "local"

    def unavailable_reason(self, options: ServerOptions) -> str | None:
        try:
            options.spec.find_binaries(options.bin_dir)
            RunAs.for_spec(options.spec)
        except BackendUnavailable as exc:
            return str(exc)
        return None

    def start(self, options: ServerOptions) -> RunningServer:
        spec = options.spec
        binaries = spec.find_binaries(options.bin_dir)
        run_as = RunAs.for_spec(spec)
        if options.port is not None and port_in_use(options.port):
            raise ServerStartError(
                f"port {options.port} on 127.0.0.1 is already in use; choose another port "
                f"or let {spec.title} pick a free one (port=None)"
            )
        credentials = spec.credentials(options.password)
        warm = None
        # A fixed password is the user's: no warm entry's credentials replace it.
        if options.warm_dir is not None and options.password is None:
            # Imported here: the lifecycle layer imports this module.
            from pytest_integration_kit.lifecycle.warm import WarmDataDirs  # noqa: PLC0415

            warm = WarmDataDirs(options.warm_dir).starter(
                spec.name, binaries, credentials, keep=spec.password_in_data_dir
            )
            credentials = warm.credentials
        # A free port can be taken by someone else before the server binds it: retry.
        attempts = 1 if options.port is not None else PORT_ATTEMPTS
        for attempt in range(1, attempts + 1):
            port = options.port if options.port is not None else free_port()
            try:
                return self._start_once(options, binaries, run_as, credentials, port, warm=warm)
            except _PortTaken as exc:
                if attempt == attempts:
                    raise ServerStartError(
                        f"{spec.title} could not bind 127.0.0.1:{port}: {exc}"
                    ) from None
        raise AssertionError("unreachable")

    def _start_once(
        self,
        options: ServerOptions,
        binaries: dict[str, Path],
        run_as: RunAs | None,
        credentials: Credentials,
        port: int,
        *,
        warm: WarmStart | None = None,
    ) -> LocalServer:
        spec = options.spec
        started = time.monotonic()
        user = None if run_as is None else (run_as.uid, run_as.gid)
        workdir = Path(
            tempfile.mkdtemp(
                prefix=f"{WORKDIR_PREFIX}{options.session_id}-{spec.name}-",
                dir=options.workdir_root or workdir_base(user),
            )
        )
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(workdir),
            "LANG": "C",
            "LC_ALL": "C",
            "TMPDIR": str(workdir),
        }
        process: subprocess.Popen[bytes] | None = None
        try:
            sockets = socket_dir(
                workdir, options.session_id if options.workdir_root is None else "kept", user
            )
            runner = LocalRunner(run_as, workdir, env, warm, sockets)
            runner.ports = _extra_ports(spec, port)
            runner.own(workdir)
            runner.own(sockets)
            launch = spec.prepare_local(
                binaries=binaries,
                workdir=workdir,
                port=port,
                credentials=credentials,
                runner=runner,
            )
            log = workdir / "server.log"
            # A new file, never a link the server's user put there (it owns workdir).
            fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
            with open(fd, "wb") as log_handle:
                process = _spawn(list(launch.command), runner, {**env, **launch.env}, log_handle)
            endpoint = spec.endpoint(
                host="127.0.0.1", port=port, credentials=credentials, backend=self.name
            )
            endpoint = dataclasses.replace(endpoint, ports=dict(runner.ports))
            try:
                context = _ProcessContext(log, workdir, {**env, **launch.env})
                version = wait_until_ready(
                    lambda seconds: spec.ready(endpoint, seconds, context),
                    what=f"{spec.title} (local, {binaries[next(iter(binaries))]})",
                    timeout=options.startup_timeout,
                    log_tail=lambda: _tail(log, 40, credentials.password),
                    is_running=lambda: process is not None and process.poll() is None,
                )
            except ServerStartError:
                tail = _tail(log, 80, credentials.password)
                if says_port_taken(tail):
                    raise _PortTaken(tail.strip().splitlines()[-1]) from None
                raise
            for path in launch.remove_when_ready:
                path.unlink(missing_ok=True)
            endpoint = spec.endpoint(
                host="127.0.0.1",
                port=port,
                credentials=credentials,
                backend=self.name,
                version=version,
            )
            endpoint = dataclasses.replace(endpoint, ports=dict(runner.ports))
            spec.after_start(endpoint, f"local, {binaries[next(iter(binaries))]}")
            server = LocalServer(
                spec=spec,
                process=process,
                workdir=workdir,
                log=log,
                endpoint=endpoint,
                seconds_to_ready=time.monotonic() - started,
            )
            server.warm = warm is not None and warm.hit
            return server
        except BaseException:
            # Nothing half-started is left behind.
            if process is not None:
                _terminate(process, signal.SIGKILL)
            remove_workdir(workdir)
            raise


class _PortTaken(Exception):
    pass


def _extra_ports(spec: ServiceSpec, port: int) -> dict[str, int]:
    """A distinct free port for each of the spec's extra ports (none is ``port``)."""
    taken = {port}
    chosen: dict[str, int] = {}
    for name in spec.extra_ports:
        candidate = free_port()
        while candidate in taken:
            candidate = free_port()
        taken.add(candidate)
        chosen[name] = candidate
    return chosen


def _spawn(
    command: list[str], runner: LocalRunner, env: dict[str, str], log: IO[bytes]
) -> subprocess.Popen[bytes]:
    try:
        return subprocess.Popen(
            command,
            cwd=runner.workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            # Its own session: a Ctrl-C in the terminal reaches pytest, which then
            # stops the server in order, instead of killing it mid-test.
            start_new_session=True,
            user=runner.uid,
            group=runner.gid,
            extra_groups=runner.extra_groups,
        )
    except OSError as exc:
        raise ServerStartError(f"could not run {command[0]}: {exc}") from None


def _terminate(process: subprocess.Popen[bytes], sig: int, grace: float = 15.0) -> None:
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(sig)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=grace)


class _ProcessContext(ServerContext):
    """Readiness's view of a local server: its log file, and commands run on this host
    in its directory with its environment."""

    available = True

    def __init__(self, log: Path, workdir: Path, env: dict[str, str]) -> None:
        self.log_path, self.workdir, self.env = log, workdir, env

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def run(self, command: Sequence[str], timeout: float) -> tuple[int, str]:
        done = subprocess.run(
            list(command),
            cwd=self.workdir,
            env=self.env,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
        return done.returncode, (done.stdout + done.stderr).decode(errors="replace")


def _tail(path: Path, lines: int, secret: str) -> str:
    try:
        with open(path, errors="replace") as handle:
            text = "".join(deque(handle, maxlen=lines))
    except OSError:
        return "(no server log)"
    return mask(text, secret) or "(the server log is empty)"
