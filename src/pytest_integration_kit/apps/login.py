"""``integration_login``: log a user in once per run, not once per test.

The login callable is the user's: given a client into the application and a user, it
returns what a request needs to be that user — a mapping of headers, an
``httpx.Cookies``, or nothing, in which case the cookies the client holds afterwards
(a session cookie the login response set) are taken. :class:`Login` caches the result
per user identity for the rest of the run (the process: each xdist worker logs in once),
so a suite with a deliberately slow password hash pays for it once per user.

The cache is right for credentials that outlive a test: a signed token or cookie for a
user that lives in the template (seed data). A user the test itself creates is gone at
its end; log it in with ``cache=False``.

Nothing here imports pytest.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["Credentials", "Login", "user_identity"]


@dataclass(frozen=True)
class Credentials:
    """What a request carries to be a user."""

    headers: dict[str, str] = field(default_factory=dict)
    cookies: dict[str, str] = field(default_factory=dict)


def user_identity(user: Any) -> Hashable:
    """A key telling users apart: the value itself (a name, an id), a mapped object's
    class and primary key, an object's ``id``, or a mapping's items."""
    if isinstance(user, (str, int, bytes, tuple, frozenset)):
        return (type(user).__name__, user)
    if isinstance(user, Mapping):
        return ("mapping", tuple(sorted((str(k), repr(v)) for k, v in user.items())))
    try:
        from sqlalchemy import inspect  # noqa: PLC0415 - optional dependency

        state = inspect(user, raiseerr=False)
    except ImportError:
        state = None
    identity = getattr(state, "identity", None)
    if identity is not None:
        return (type(user).__qualname__, tuple(identity))
    for attribute in ("id", "pk", "username", "email"):
        value = getattr(user, attribute, None)
        if value is not None:
            return (type(user).__qualname__, attribute, value)
    raise TypeError(
        f"cannot tell which user a {type(user).__name__} is (no primary key, id, username "
        "or email): pass a name or id, or log in with as_user(user, cache=False)"
    )


class Login:
    """The login callable and the run's cache of its results."""

    def __init__(self, function: Callable[[httpx.Client, Any], Any]) -> None:
        self.function = function
        self._cache: dict[Hashable, Credentials] = {}
        self._lock = threading.Lock()
        #: Logins made (cache misses): the figure a slow-hash suite cares about.
        self.calls = 0

    def credentials(
        self, user: Any, new_client: Callable[[], httpx.Client], *, cache: bool = True
    ) -> Credentials:
        """``user``'s credentials: from the cache, else from the login callable."""
        key = user_identity(user) if cache else None
        if key is not None:
            with self._lock:
                known = self._cache.get(key)
            if known is not None:
                return known
        client = new_client()
        result = self.function(client, user)
        self.calls += 1
        credentials = self._read(result, client)
        if key is not None:
            with self._lock:
                self._cache.setdefault(key, credentials)
        return credentials

    def _read(self, result: Any, client: httpx.Client) -> Credentials:
        name = getattr(self.function, "__qualname__", repr(self.function))
        if result is None:
            cookies = {cookie.name: cookie.value or "" for cookie in client.cookies.jar}
            if not cookies:
                raise ValueError(
                    f"integration_login: {name} returned nothing and the client holds no "
                    "cookie: return the headers (e.g. {'Authorization': 'Bearer …'}) or cookies"
                )
            return Credentials(cookies=cookies)
        if isinstance(result, httpx.Cookies):
            return Credentials(cookies={c.name: c.value or "" for c in result.jar})
        if isinstance(result, (Mapping, httpx.Headers)):
            return Credentials(headers={str(k): str(v) for k, v in result.items()})
        raise TypeError(
            f"integration_login: {name} returned a {type(result).__name__}; expected a "
            "mapping of headers, an httpx.Cookies, or None (cookies set on the client)"
        )
