"""How a test logs in: the real login endpoint, once per user per run (integration_login)."""

from __future__ import annotations

import httpx

#: The seed's users and their passwords (tests/seed.sql).
PASSWORDS = {"ada@example.com": "ada-secret-1", "grace@example.com": "grace-secret-1"}


def login(client: httpx.Client, user: str) -> dict[str, str]:
    """``app_client.as_user("ada@example.com")`` carries this Authorization header."""
    answer = client.post("/login", json={"email": user, "password": PASSWORDS[user]})
    answer.raise_for_status()
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}
