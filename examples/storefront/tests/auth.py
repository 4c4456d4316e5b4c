"""How a test logs in: the real login endpoint, once per user per run (integration_login)."""

from __future__ import annotations

import httpx

from storefront.models import User
from tests import factories

#: The seed's users and their passwords (tests/seed.sql).
PASSWORDS = {"ada@example.com": "ada-secret-1", "grace@example.com": "grace-secret-1"}


def login(client: httpx.Client, user: str | User) -> dict[str, str]:
    """``app_client.as_user("ada@example.com")`` (a seeded user) or ``as_user(user,
    cache=False)`` (a factory's) carries this Authorization header."""
    if isinstance(user, str):
        email, password = user, PASSWORDS[user]
    else:
        email, password = user.email, factories.PASSWORD
    answer = client.post("/login", json={"email": email, "password": password})
    answer.raise_for_status()
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}
