"""What the kit's databases are called: a prefix, the owner's token, at most 63 bytes.

Every name is made here, so the reaper and the template pruning can tell the kit's
databases (``pik_…``) and templates (``pik_tpl_…``) from anyone else's.
"""

from __future__ import annotations

import hashlib
import os
import re
import uuid

__all__ = ["MAX_NAME_BYTES", "NAME_PREFIX", "TEMPLATE_PREFIX", "database_name", "owner_token"]

#: PostgreSQL truncates identifiers beyond 63 bytes; MySQL allows 64.
MAX_NAME_BYTES = 63

#: Every database the kit makes starts with this; templates with TEMPLATE_PREFIX.
NAME_PREFIX = "pik_"
TEMPLATE_PREFIX = "pik_tpl_"


def owner_token(session_id: str | None = None, worker: str | None = None) -> str:
    """``<session>_<worker>``: unique per pytest session and xdist worker, lower-case.

    The session part is random unless given, so two sessions on one shared server
    never pick the same names.
    """
    session = session_id or uuid.uuid4().hex[:12]
    worker = worker if worker is not None else os.environ.get("PYTEST_XDIST_WORKER", "main")
    return re.sub(r"[^a-z0-9_]", "_", f"{session}_{worker}".lower())


def database_name(*parts: str) -> str:
    """``pik_<parts…>``, shortened with a hash when it would exceed 63 bytes."""
    name = NAME_PREFIX + "_".join(p for p in parts if p)
    name = re.sub(r"[^a-z0-9_]", "_", name.lower())
    if len(name.encode()) <= MAX_NAME_BYTES:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:12]
    return name[: MAX_NAME_BYTES - len(digest) - 1] + "_" + digest
