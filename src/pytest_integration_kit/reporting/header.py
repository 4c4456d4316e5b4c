"""The report header: one line by default, the whole settings table with ``-v``.

The line names each service the selected tests need with its backend, then only the
settings the user changed, each with where it came from:
``integration: postgres local (from ini), redis auto, isolation=truncate (env)``.
A service's settings that its backend does not use (the image on ``local``) are left
out; URLs are shown with their password masked.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pytest_integration_kit.services import REGISTRY

if TYPE_CHECKING:
    from collections.abc import Iterable

    from pytest_integration_kit.settings import ResolvedSetting, Settings

__all__ = ["header_line", "is_default", "settings_table"]

#: Which per-service settings each backend uses (``auto`` tries docker, then local).
USED_BY = {
    "auto": ("image", "bin_dir"),
    "docker": ("image",),
    "local": ("bin_dir",),
    "url": ("url",),
}


EXPLICIT = ("cli", "env", "ini")
PER_SERVICE = ("image", "url", "bin_dir")


def is_default(resolved: ResolvedSetting) -> bool:
    """A value the user did not set: a default, or inherited from another setting."""
    return resolved.source not in EXPLICIT


def _shown(resolved: ResolvedSetting) -> str:
    """``value (source)``, the password of a URL masked."""
    return resolved.describe()


def header_line(settings: Settings, services: Iterable[str] | None) -> str | None:
    """The one-line header, or None when there is nothing to say.

    ``services`` are those the selected tests need; None when unknown (on xdist's
    controller, which does not collect): then every changed setting is shown.
    """
    parts: list[str] = []
    hidden = {"backend"}
    if services is not None:
        needed = list(dict.fromkeys(services))
        hidden |= {f"{s}_{key}" for s in REGISTRY.names() for key in ("backend", *PER_SERVICE)}
        for service in needed:
            parts.append(_service_part(settings, service))
            backend = str(settings[f"{service}_backend"]) if _has(settings, service) else ""
            hidden -= {f"{service}_{key}" for key in USED_BY.get(backend, ())}
    elif not is_default(settings.resolved["backend"]):
        parts.append(f"backend={_shown(settings.resolved['backend'])}")
    for resolved in settings:
        if resolved.setting.name not in hidden and not is_default(resolved):
            parts.append(f"{resolved.setting.name}={_shown(resolved)}")
    return "integration: " + ", ".join(parts) if parts else None


def _has(settings: Settings, service: str) -> bool:
    return f"{service}_backend" in settings.resolved


def _service_part(settings: Settings, service: str) -> str:
    """``postgres local (from ini)``; the source only when the user chose the backend."""
    if not _has(settings, service):
        return service  # a service registered without settings of its own
    resolved = settings.resolved[f"{service}_backend"]
    source = resolved.source
    if source.startswith("from integration_backend"):
        source = settings.source("backend")
    chosen = f" (from {source})" if source in EXPLICIT else ""
    return f"{service} {resolved.value}{chosen}"


def settings_table(settings: Settings) -> list[str]:
    """Every setting with its value and source, general first, then per service (``-v``)."""
    general: list[str] = []
    per_service: dict[str, list[str]] = {service: [] for service in REGISTRY.names()}
    for resolved in settings:
        name = resolved.setting.name
        service = next((s for s in per_service if name.startswith(f"{s}_")), None)
        if service is not None:
            per_service[service].append(f"{name[len(service) + 1 :]}={_shown(resolved)}")
        else:
            general.append(f"{name}={_shown(resolved)}")
    lines = ["integration: " + ", ".join(general)]
    lines += [
        f"integration {service}: " + ", ".join(parts) for service, parts in per_service.items()
    ]
    return lines
