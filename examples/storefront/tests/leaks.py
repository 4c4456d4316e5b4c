"""The strict check that nothing outlives a test: rows, Redis keys, stream messages.

Each table's content is hashed (one query) and compared with what the worker's
database held before its first test — the seed; Redis must hold no key at all (a
stream, its consumer groups and their pending messages are one key).
"""

from __future__ import annotations

import os

import redis
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.pool import NullPool

from storefront.models import Base
from storefront.settings import settings


class LeakCheck:
    def __init__(self) -> None:
        url = make_url(settings.database_url).set(drivername="postgresql+psycopg")
        self.engine = create_engine(url, poolclass=NullPool)
        self.redis = redis.Redis.from_url(settings.redis_url)
        tables = sorted(Base.metadata.tables)
        self.query = text(
            "SELECT "
            + ", ".join(
                f"(SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) "
                f"FROM {name} t) AS {name}"
                for name in tables
            )
        )
        self.enabled = "DATABASE_URL" in os.environ  # servers skipped: nothing to check
        self.baseline = self._tables() if self.enabled else {}
        self.previous = "a test before"

    def _tables(self) -> dict[str, str]:
        with self.engine.connect() as connection:
            return dict(connection.execute(self.query).mappings().one())

    def leftovers(self) -> list[str]:
        """What differs from a fresh worker database and an empty Redis database."""
        if not self.enabled:
            return []
        now = self._tables()
        changed = [name for name, digest in now.items() if digest != self.baseline[name]]
        keys = sorted(key.decode() for key in self.redis.scan_iter(count=1000))
        # Reported once: the tests after the culprit start from here.
        self.baseline = now
        if keys:
            self.redis.flushdb()
        return [f"rows changed in {name}" for name in changed] + [f"Redis key {k}" for k in keys]

    def close(self) -> None:
        self.engine.dispose()
        self.redis.close()
