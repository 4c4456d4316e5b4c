"""Where the generated projects get their servers: local, docker, or url.

``local`` needs the server binaries (``./dev provision``); ``docker`` the offline test
images; ``url`` the servers named by ``PIK_TEST_POSTGRES_URL`` and
``PIK_TEST_MYSQL_URL`` (``.ci/run`` starts them), on which the databases the kit makes
are counted before and after a phase: the new ones are leftovers.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from typing import Final

__all__ = ["BACKENDS", "Target", "target"]

BACKENDS: Final = ("local", "docker", "url")
IMAGES: Final = {
    "postgres": "pytest-integration-kit/postgres:15",
    "mysql": "pytest-integration-kit/mysql:10.11",
}
URL_ENV: Final = {"postgres": "PIK_TEST_POSTGRES_URL", "mysql": "PIK_TEST_MYSQL_URL"}


@dataclass(frozen=True)
class Target:
    """One backend as the generated projects use it."""

    name: str
    ini: str = ""
    env: dict[str, str] = field(default_factory=dict)
    urls: dict[str, str] = field(default_factory=dict)
    missing: str | None = None

    def databases(self) -> set[str]:
        """The kit's databases (not templates) on the url servers, ``service:name``."""
        found: set[str] = set()
        if self.name != "url":
            return found
        from sqlalchemy import create_engine, text  # noqa: PLC0415 - a driver, when used
        from sqlalchemy.engine import make_url  # noqa: PLC0415

        for service, raw in self.urls.items():
            url = make_url(raw)
            driver = {"postgres": "postgresql+psycopg", "mysql": "mysql+pymysql"}[service]
            engine = create_engine(url.set(drivername=driver))
            query = "SELECT datname FROM pg_database" if service == "postgres" else "SHOW DATABASES"
            try:
                with engine.connect() as conn:
                    names = conn.execute(text(query)).scalars().all()
            finally:
                engine.dispose()
            found |= {
                f"{service}:{n}"
                for n in names
                if n.startswith("pik_") and not n.startswith("pik_tpl_")
            }
        return found


def target(name: str, services: tuple[str, ...]) -> Target:
    """The backend ``name``, or one whose ``missing`` says why it cannot run here."""
    if name == "local":
        return Target("local", ini="integration_backend = local\n")
    if name == "docker":
        ini = "integration_backend = docker\n" + "".join(
            f"integration_{s}_image = {IMAGES[s]}\n" for s in services
        )
        missing = None
        if shutil.which("docker") is None:
            missing = "no docker command"
        else:
            try:
                probe = subprocess.run(
                    ["docker", "image", "inspect", *(IMAGES[s] for s in services)],
                    capture_output=True,
                    timeout=30,
                    check=False,
                )
                if probe.returncode != 0:
                    missing = "the offline test images are not built (./dev provision)"
            except (OSError, subprocess.SubprocessError) as exc:
                missing = f"docker does not answer: {exc}"
        return Target("docker", ini=ini, missing=missing)
    if name == "url":
        urls = {s: os.environ.get(URL_ENV[s], "") for s in services}
        unset = [URL_ENV[s] for s, u in urls.items() if not u]
        env = {f"INTEGRATION_{s.upper()}_URL": u for s, u in urls.items()}
        return Target(
            "url",
            ini="integration_backend = url\n",
            env=env,
            urls=urls,
            missing=f"{', '.join(unset)} not set" if unset else None,
        )
    raise ValueError(f"unknown backend {name!r}: one of {', '.join(BACKENDS)}")
