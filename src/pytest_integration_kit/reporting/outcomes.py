"""What a test that needs an unavailable server gets: a skip, or an error.

* A missing pip extra (the service's driver) is an error: installing it is the fix.
* A server that the backend launched but that did not come up is an error.
* A backend chosen by name (``docker``, ``local``, ``url``) that cannot run is an error:
  the user asked for it. ``integration_missing=skip`` set explicitly still skips.
* Under ``auto``, ``integration_missing`` decides (skip, or fail when ``CI`` is set).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pytest_integration_kit.errors import BackendUnavailable, MissingExtra

__all__ = ["Unavailable", "decide", "fix_for"]

#: Where a setting's value came from when the user set it (not a default).
EXPLICIT_SOURCES = ("cli", "env", "ini")


@dataclass(frozen=True)
class Unavailable:
    """The decision for the tests of one unavailable service, and what to tell the user."""

    service: str
    title: str
    action: Literal["skip", "error"]
    #: The test's message: what was tried and why it could not run.
    message: str
    #: Why each backend could not run the service (``"docker: …"``), or the one reason.
    reasons: tuple[str, ...]
    #: One line saying how to make the service available.
    fix: str

    def to_json(self) -> dict[str, object]:
        """For the test report, which crosses from xdist workers to the controller."""
        return {
            "service": self.service,
            "title": self.title,
            "action": self.action,
            "reasons": list(self.reasons),
            "fix": self.fix,
        }


def fix_for(service: str, title: str, backend: str) -> str:
    """How to make ``service`` available on ``backend`` (``auto``: any of them)."""
    docker = "start Docker (or fix DOCKER_HOST)"
    local = f"install {title}'s server binaries (or set integration_{service}_bin_dir)"
    url = f"set integration_{service}_url to a running server"
    if backend == "docker":
        return docker
    if backend == "local":
        return local
    if backend == "url":
        return url
    return f"{docker}, {local}, or {url} with integration_{service}_backend=url"


def decide(
    exc: BackendUnavailable,
    *,
    service: str,
    title: str,
    backend: str,
    backend_source: str,
    missing: str,
    missing_source: str,
) -> Unavailable:
    """Skip or error for ``exc``, raised when ``service`` was asked of ``backend``.

    ``backend_source`` says where the backend choice came from (``cli``, ``env``,
    ``ini``, a default, or ``fixture`` for a factory's argument).
    """
    reasons = exc.tried or (str(exc).splitlines()[0] if str(exc) else "unavailable",)
    message = f"{title} unavailable: {exc}"
    if isinstance(exc, MissingExtra):
        return Unavailable(service, title, "error", message, reasons, str(exc).rsplit(": ", 1)[-1])
    fix = fix_for(service, title, backend)
    if backend != "auto":
        if missing == "skip" and missing_source in EXPLICIT_SOURCES:
            return Unavailable(service, title, "skip", message, reasons, fix)
        message += (
            f"\n(integration_backend={backend} was chosen ({_source(backend_source)}), so it "
            "must run; choose auto, or set integration_missing=skip to skip such tests)"
        )
        return Unavailable(service, title, "error", message, reasons, fix)
    if missing == "skip":
        return Unavailable(service, title, "skip", message, reasons, fix)
    message += "\n(integration_missing=fail: set it to skip to skip such tests)"
    return Unavailable(service, title, "error", message, reasons, fix)


def _source(source: str) -> str:
    if source in EXPLICIT_SOURCES:
        return f"from {source}"
    return source
