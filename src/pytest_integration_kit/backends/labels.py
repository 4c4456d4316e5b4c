"""The labels on every container of ours, in a module of their own: the reaper reads
them at every run without importing the docker backend."""

from __future__ import annotations

from typing import Final

__all__ = ["LABEL_PREFIX", "REUSE_LABEL", "SESSION_LABEL"]

LABEL_PREFIX: Final = "pytest-integration-kit"
#: The session a container belongs to (with its owner's pid, host and start time).
SESSION_LABEL: Final = f"{LABEL_PREFIX}.session"
#: A server kept for the next runs (its value: the hash of its configuration).
REUSE_LABEL: Final = f"{LABEL_PREFIX}.reuse"
