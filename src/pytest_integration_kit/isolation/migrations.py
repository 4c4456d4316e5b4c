"""Alembic ``upgrade head`` in a fresh interpreter, under the application's environment.

A stock ``env.py`` often reads its URL from the application's settings, and those were
read once, at import, from ``integration_env`` — pointing at the worker's database. In
this process they cannot be made to name the template, so the migration runs in a
child process whose environment names the template database instead. The URL goes by
environment variable, never on a command line other users can read.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from typing import TYPE_CHECKING, Final

from pytest_integration_kit.errors import IntegrationKitError

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

__all__ = ["MIGRATION_TIMEOUT", "upgrade_in_subprocess"]

#: Seconds ``upgrade head`` may take before it is stopped.
MIGRATION_TIMEOUT: Final = 600.0
#: Where the child finds the URL of the database to migrate.
URL_VARIABLE: Final = "PYTEST_INTEGRATION_KIT_MIGRATION_URL"
#: Lines of the child's output quoted in an error.
TAIL_LINES: Final = 30

_PROGRAM = f"""
import os, sys
from alembic import command
from alembic.config import Config

config = Config(sys.argv[1])
# configparser interpolation: a % in a password must be doubled.
config.set_main_option("sqlalchemy.url", os.environ.pop({URL_VARIABLE!r}).replace("%", "%%"))
command.upgrade(config, "head")
"""


def upgrade_in_subprocess(
    ini: Path, url: str, environment: Mapping[str, str], *, database: str = ""
) -> None:
    """Run ``alembic upgrade head`` for ``ini`` against ``url`` with ``environment`` set.

    The child sees this process's ``sys.path`` (so the application and its tests'
    helpers import as they do here) and runs in the current directory.
    """
    env = {**os.environ, **environment, URL_VARIABLE: url}
    path = [entry for entry in sys.path if entry]
    env["PYTHONPATH"] = os.pathsep.join(path)
    what = f"alembic upgrade head ({ini}) on the template database {database!r}"
    try:
        result = subprocess.run(
            [sys.executable, "-c", _PROGRAM, str(ini)],
            env=env,
            capture_output=True,
            text=True,
            timeout=MIGRATION_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise IntegrationKitError(
            f"{what} did not finish in {MIGRATION_TIMEOUT:g} s (stopped)"
        ) from None
    if result.returncode != 0:
        lines = [line for line in (result.stderr or result.stdout).strip().splitlines() if line]
        error = next(
            (line for line in reversed(lines) if re.match(r"[\w.]*(Error|Exception)\b", line)),
            lines[-1] if lines else "no output",
        )
        variables = ", ".join(sorted(environment)) or "none"
        tail = "\n".join(lines[-TAIL_LINES:])
        # The first line says it all: callers may show only that one.
        raise IntegrationKitError(
            f"{what} failed (exit {result.returncode}): {error} — the servers are up, the "
            f"migration failed; it ran with integration_env's variables ({variables}) "
            f"naming the template database\n{tail}"
        )
