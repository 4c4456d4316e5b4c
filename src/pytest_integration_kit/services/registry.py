"""Which services exist: the registry every other layer derives its lists from.

A service is one :class:`~pytest_integration_kit.services.spec.ServiceSpec`, registered
either through the entry point group ``pytest_integration_kit.services`` (the built-in
PostgreSQL, MySQL and Redis are declared there, in this package's own metadata, exactly
as a third-party package declares its own) or by calling :func:`register_service` —
in a conftest at import time, before pytest resolves the settings. Settings, markers,
server fixtures, report lines and the configuration reference are all made from what
is registered here; nothing else lists services by hand.
"""

from __future__ import annotations

import re
import threading
from typing import TYPE_CHECKING, Any

from pytest_integration_kit.errors import ConfigError
from pytest_integration_kit.services.entry_points import declared_entry_points
from pytest_integration_kit.services.spec import ServiceSpec

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

__all__ = [
    "ENTRY_POINT_GROUP",
    "REGISTRY",
    "ServiceRegistrationError",
    "ServiceRegistry",
    "register_service",
    "spec_for",
]

#: The entry point group a package declares its services in.
ENTRY_POINT_GROUP = "pytest_integration_kit.services"
#: The distribution whose entry points are the built-in services.
OWN_DISTRIBUTION = "pytest-integration-kit"

NAME_PATTERN = re.compile(r"[a-z][a-z0-9_]{0,30}")
#: Class attributes a spec must set; the rest have defaults on ServiceSpec.
REQUIRED = ("title", "scheme", "container_port", "default_image")


class ServiceRegistrationError(ConfigError):
    """A spec cannot be registered: bad name, missing attribute, name taken, too late."""


class ServiceRegistry:
    """Registered specs by name, in registration order (built-ins first)."""

    def __init__(self) -> None:
        self._specs: dict[str, ServiceSpec] = {}
        self._sources: dict[str, str] = {}
        self._lock = threading.RLock()
        self._loaded = False
        #: Why an entry point could not be loaded; reported as a usage error.
        self.problems: list[str] = []
        self._listeners: list[Callable[[ServiceSpec], None]] = []
        #: Set once the settings are resolved: a later registration could not get any.
        self.closed_because: str | None = None

    # -- loading and registering -------------------------------------------------------

    def load_entry_points(self) -> None:
        """Register every spec declared in the entry point group (once)."""
        with self._lock:
            if self._loaded:
                return
            self._loaded = True
            own = 0
            found = declared_entry_points(ENTRY_POINT_GROUP)
            for ep, dist in sorted(found, key=lambda pair: _builtin_first(*pair)):
                where = f"entry point {ep.name} = {ep.value} (from {dist})"
                try:
                    spec = _instance(ep.load())
                    if spec.name != ep.name:
                        raise ServiceRegistrationError(
                            f"its spec is named {spec.name!r}; the entry point's name must match"
                        )
                    self.register(spec, source=where)
                except Exception as exc:  # a broken package must not crash pytest
                    self.problems.append(f"{where}: {exc}")
                    continue
                own += _is_own(dist)
            if own == 0:
                self.problems.append(
                    f"the installed metadata of {OWN_DISTRIBUTION} declares no services in "
                    f"the entry point group {ENTRY_POINT_GROUP!r} (an install older than "
                    "the code?): reinstall it, e.g. pip install -e ."
                )

    def register(self, spec: ServiceSpec, *, source: str = "register_service()") -> ServiceSpec:
        """Add ``spec``; registering the same class again under its name is a no-op."""
        if not isinstance(spec, ServiceSpec):
            raise ServiceRegistrationError(
                f"register_service() takes a ServiceSpec instance, not {spec!r}"
            )
        _validate(spec)
        with self._lock:
            old = self._specs.get(spec.name)
            if old is not None:
                if _same_class(old, spec):
                    self._specs[spec.name] = spec  # a conftest imported again (pytester)
                    return spec
                raise ServiceRegistrationError(
                    f"the service name {spec.name!r} is taken by "
                    f"{type(old).__module__}.{type(old).__qualname__} "
                    f"({self._sources[spec.name]}); choose another name"
                )
            if self.closed_because is not None:
                raise ServiceRegistrationError(
                    f"{type(spec).__qualname__} ({spec.name!r}) was registered after "
                    f"{self.closed_because}, too late to get settings, markers and a "
                    "fixture: call register_service() at import time of the rootdir "
                    "conftest.py (or a plugin it names in pytest_plugins), or declare it "
                    f"in the entry point group {ENTRY_POINT_GROUP!r}"
                )
            self._specs[spec.name] = spec
            self._sources[spec.name] = source
            listeners = list(self._listeners)
        for listener in listeners:
            listener(spec)
        return spec

    # -- pytest's use: hear of registrations, close, undo a run's -----------------------

    def subscribe(self, listener: Callable[[ServiceSpec], None]) -> None:
        """Call ``listener`` with every spec registered from now on."""
        with self._lock:
            self._listeners.append(listener)

    def open(self) -> None:
        """Accept registrations (a pytest run is loading its conftests)."""
        with self._lock:
            self.closed_because = None

    def close(self, reason: str) -> None:
        """Refuse registrations from now on (the settings were resolved); nobody needs
        to hear of them any more."""
        with self._lock:
            self.closed_because = reason
            self._listeners.clear()

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "specs": dict(self._specs),
                "sources": dict(self._sources),
                "listeners": list(self._listeners),
                "closed": self.closed_because,
            }

    def restore(self, state: dict[str, Any]) -> None:
        """Undo what one pytest run registered (runs nest under pytester)."""
        with self._lock:
            self._specs = dict(state["specs"])
            self._sources = dict(state["sources"])
            self._listeners = list(state["listeners"])
            self.closed_because = state["closed"]

    # -- looking up --------------------------------------------------------------------

    def specs(self) -> list[ServiceSpec]:
        self.load_entry_points()
        with self._lock:
            return list(self._specs.values())

    def names(self) -> list[str]:
        return [spec.name for spec in self.specs()]

    def __iter__(self) -> Iterator[ServiceSpec]:
        return iter(self.specs())

    def get(self, name: str) -> ServiceSpec | None:
        self.load_entry_points()
        with self._lock:
            return self._specs.get(name)

    def source(self, name: str) -> str:
        with self._lock:
            return self._sources.get(name, "")

    def builtin(self) -> list[ServiceSpec]:
        """The services this package itself declares (for its configuration reference)."""
        return [s for s in self.specs() if f"(from {OWN_DISTRIBUTION})" in self.source(s.name)]

    def markers(self) -> dict[str, str]:
        """``requires_<name>`` per registered service, and the markers they share, each
        with the description pytest registers."""
        markers: dict[str, str] = {}
        shared: dict[str, list[str]] = {}
        for spec in self.specs():
            markers[f"requires_{spec.name}"] = (
                f"the test uses a {spec.title} server (applied automatically)"
            )
            for marker in spec.markers[1:]:
                shared.setdefault(marker, []).append(spec.title)
        for marker, titles in shared.items():
            markers[marker] = (
                f"the test uses a {' or '.join(titles)} server (applied automatically)"
            )
        return markers


REGISTRY = ServiceRegistry()


def register_service(spec: ServiceSpec) -> ServiceSpec:
    """Register a service for this run; returns ``spec``.

    Call it at import time of the rootdir ``conftest.py``::

        register_service(EchoSpec())

    and the service gets its settings (``integration_<name>_backend`` …), its marker
    ``requires_<name>``, its ``<name>_server`` fixture, report lines and lifecycle.

    .. versionadded:: 0.1
    """
    return REGISTRY.register(spec)


def spec_for(service: str | ServiceSpec) -> ServiceSpec:
    """The registered spec called ``service`` (a spec is returned as is)."""
    if isinstance(service, ServiceSpec):
        return service
    spec = REGISTRY.get(service)
    if spec is None:
        raise ValueError(f"unknown service {service!r}; registered: {', '.join(REGISTRY.names())}")
    return spec


def _instance(loaded: object) -> ServiceSpec:
    if isinstance(loaded, type) and issubclass(loaded, ServiceSpec):
        return loaded()
    if isinstance(loaded, ServiceSpec):
        return loaded
    raise ServiceRegistrationError(f"it names {loaded!r}, not a ServiceSpec subclass or instance")


def _validate(spec: ServiceSpec) -> None:
    name = getattr(spec, "name", None)
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise ServiceRegistrationError(
            f"{type(spec).__qualname__}.name = {name!r}: a service name is lower case "
            "letters, digits and _ (starting with a letter, at most 31), as it becomes "
            "part of setting, marker and fixture names"
        )
    missing = [attr for attr in REQUIRED if not hasattr(spec, attr)]
    if missing:
        raise ServiceRegistrationError(
            f"{type(spec).__qualname__} ({name!r}) does not set {', '.join(missing)}"
        )


def _same_class(a: ServiceSpec, b: ServiceSpec) -> bool:
    ta, tb = type(a), type(b)
    return (ta.__module__, ta.__qualname__) == (tb.__module__, tb.__qualname__)


def _is_own(dist: str) -> bool:
    return dist.replace("_", "-").lower() == OWN_DISTRIBUTION


def _builtin_first(ep: Any, dist: str) -> tuple[bool, str]:
    # By name, not by the metadata's order: installers write entry points in different
    # orders, and the header, markers and docs must not change with the installer.
    return (not _is_own(dist), str(ep.name))
