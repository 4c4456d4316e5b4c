"""Each built-in service counts its client connections from its own statistics, without
the connection asking: three more clients, three more counted."""

from __future__ import annotations

import contextlib
from typing import Any

import psycopg
import pymysql
import pytest
import redis

from pytest_integration_kit.services import spec_for


def _connect(service: str, url: str) -> Any:
    endpoint = spec_for(service).endpoint_from_url(url)
    if service == "postgres":
        return psycopg.connect(
            host=endpoint.host,
            port=endpoint.port,
            user=endpoint.user,
            password=endpoint.password,
            dbname=endpoint.database,
        )
    if service == "mysql":
        return pymysql.connect(
            host=endpoint.host, port=endpoint.port, user=endpoint.user, password=endpoint.password
        )
    client = redis.Redis(host=endpoint.host, port=endpoint.port, password=endpoint.password)
    client.ping()  # redis-py connects lazily
    return client


@pytest.mark.parametrize("service", ["postgres", "mysql", "redis"])
def test_connection_count(service: str, url_servers: dict[str, str]) -> None:
    spec = spec_for(service)
    endpoint = spec.endpoint_from_url(url_servers[service])
    seen = []
    # Other tests may share the server (CI's url servers, xdist): a few tries.
    for _ in range(5):
        before = spec.connection_count(endpoint, 5)
        assert before is not None
        assert before >= 0
        with contextlib.ExitStack() as stack:
            for _ in range(3):
                stack.callback(_connect(service, url_servers[service]).close)
            after = spec.connection_count(endpoint, 5)
        seen.append((before, after))
        if after == before + 3:
            return
    pytest.fail(f"three more clients were not counted: (before, after) = {seen}")
