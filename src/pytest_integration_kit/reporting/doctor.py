"""``python -m pytest_integration_kit doctor``: what a run from here would use, and why.

For each service: the backend a run would choose and why, the Docker image (present or
not), the server binaries found, the Python driver; the Docker engine (its version, or
why it does not answer); every setting resolved from the project's ini file and the
environment, with its source. Nothing is started or pulled.
"""

from __future__ import annotations

import importlib.util
import os
from typing import TYPE_CHECKING, Any

from pytest_integration_kit.backends.base import ServerOptions
from pytest_integration_kit.backends.local import LocalBackend
from pytest_integration_kit.errors import BackendUnavailable
from pytest_integration_kit.reporting.inifile import find_ini
from pytest_integration_kit.services import REGISTRY
from pytest_integration_kit.settings import mask_url_password, resolve_settings

if TYPE_CHECKING:
    from pathlib import Path

    from pytest_integration_kit.services.spec import ServiceSpec
    from pytest_integration_kit.settings import Settings

__all__ = ["Engine", "doctor_lines"]


class Engine:
    """The Docker engine as the docker backend would see it, checked once."""

    def __init__(self) -> None:
        self.client: Any = None
        self.version = ""
        self.problem: str | None = None
        where = os.environ.get("DOCKER_HOST") or "the default socket"
        try:
            import docker  # noqa: PLC0415 - the docker extra is optional
            import testcontainers  # noqa: F401,PLC0415
        except ImportError:
            self.problem = (
                "testcontainers is not installed: pip install 'pytest-integration-kit[docker]'"
            )
            return
        try:
            client = docker.from_env(timeout=5)
            self.version = str(client.version().get("Version", "?"))
        except Exception as exc:
            self.problem = f"the Docker engine did not answer at {where} ({_one_line(exc)})"
            return
        self.client = client
        self.where = where

    def describe(self) -> str:
        if self.problem is not None:
            return f"not usable: {self.problem}"
        return f"Docker {self.version} at {self.where}"

    def image(self, reference: str) -> str | None:
        """The short id of ``reference`` if present, else None."""
        try:
            return str(self.client.images.get(reference).short_id).removeprefix("sha256:")
        except Exception:
            return None


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300]


def _local(spec: ServiceSpec, settings: Settings) -> tuple[dict[str, Path], str | None]:
    bin_dir = settings[f"{spec.name}_bin_dir"]
    try:
        binaries = spec.find_binaries(bin_dir)
    except BackendUnavailable as exc:
        return {}, str(exc)
    options = ServerOptions(spec=spec, image="", startup_timeout=1, session_id="doctor")
    return binaries, LocalBackend().unavailable_reason(options)


def _service(spec: ServiceSpec, settings: Settings, engine: Engine) -> list[str]:
    name = spec.name
    backend = str(settings[f"{name}_backend"])
    source = settings.source(f"{name}_backend")
    if source.startswith("from integration_backend"):
        source = settings.source("backend")
    image = str(settings[f"{name}_image"])
    url = settings[f"{name}_url"]
    present = engine.image(image) if engine.problem is None else None
    docker_problem = engine.problem or (
        None if present else f"the image {image} is not present (a run would try to pull it)"
    )
    binaries, local_problem = _local(spec, settings)
    url_problem = None if url else f"integration_{name}_url is not set"
    problems = {"docker": docker_problem, "local": local_problem, "url": url_problem}
    docker_problem, local_problem = (
        p.rstrip(".") if p is not None else None for p in (docker_problem, local_problem)
    )
    if backend == "auto":
        if docker_problem is None:
            verdict = "docker (the engine answers and the image is present)"
        elif engine.problem is None and local_problem is None:
            verdict = f"docker if pulling {image} works, else local"
        elif local_problem is None:
            verdict = f"local — docker cannot: {docker_problem}"
        else:
            missing = str(settings["missing"])
            verdict = (
                f"nothing: its tests would be {'skipped' if missing == 'skip' else 'errors'} "
                f"(integration_missing={missing}) — docker: {docker_problem}; "
                f"local: {local_problem}"
            )
    else:
        problem = problems[backend]
        verdict = f"{backend} (chosen: {source})" + (
            f" — but it cannot run: {problem.rstrip('.')}; its tests would be errors"
            if problem
            else ""
        )
    lines = [f"{name} ({spec.title}): would use {verdict}"]
    if engine.problem is None:
        lines.append(f"  image {image}: " + (f"present ({present})" if present else "absent"))
    if binaries:
        found = ", ".join(f"{key} {path}" for key, path in sorted(binaries.items()))
        lines.append(f"  binaries: {found}")
    else:
        lines.append(f"  binaries: none ({local_problem})")
    if url:
        lines.append(f"  url: {mask_url_password(str(url))}")
    driver = spec.driver_packages[0] if spec.driver_packages else None
    if driver is not None:
        installed = importlib.util.find_spec(driver) is not None
        lines.append(
            f"  driver {driver}: "
            + (
                "installed"
                if installed
                else f"missing: pip install 'pytest-integration-kit[{spec.extra}]'"
            )
        )
    return lines


def doctor_lines(cwd: Path, env: dict[str, str] | None = None) -> list[str]:
    """The whole report for a run started in ``cwd`` (raises ConfigError on a bad setting)."""
    ini_path, ini = find_ini(cwd)
    settings = resolve_settings(cli={}, ini=ini, env=env)
    engine = Engine()
    lines = [f"docker engine: {engine.describe()}"]
    for spec in REGISTRY.specs():
        lines += _service(spec, settings, engine)
    where = str(ini_path) if ini_path is not None else "no pytest configuration file"
    lines.append(f"settings (from {where} and the environment; CLI options come on top):")
    for resolved in settings:
        lines.append(f"  {resolved.setting.ini} = {resolved.describe()}")
    return lines
