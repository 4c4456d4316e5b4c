"""Fixture factories: a second server in one line of a user's conftest."""

from __future__ import annotations

import pytest

from pytest_integration_kit import postgres_server_factory, server_fixture_factory


def test_a_second_postgres_on_another_backend(pytester: pytest.Pytester, backend_env: str) -> None:
    pytester.makeconftest(
        """
        from pytest_integration_kit import postgres_server_factory

        pg_local = postgres_server_factory(backend="local")
        """
    )
    pytester.makepyfile(
        """
        import psycopg

        def test_both(postgres_server, pg_local):
            assert pg_local.backend == "local"
            assert postgres_server.backend == "{backend}"
            if postgres_server.backend != "local":
                assert postgres_server.url != pg_local.url
            for server in (postgres_server, pg_local):
                with psycopg.connect(
                    host=server.host, port=server.port, user=server.user,
                    password=server.password, dbname=server.database,
                ) as conn:
                    assert conn.execute("SELECT 1").fetchone() == (1,)
        """.replace("{backend}", backend_env)
    )
    result = pytester.runpytest_subprocess("-p", "no:randomly", "-p", "no:asyncio")
    result.assert_outcomes(passed=1)


def test_equal_requests_share_one_server(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
        from pytest_integration_kit import redis_server_factory

        cache_a = redis_server_factory(backend="local")
        cache_b = redis_server_factory(backend="local")
        """
    )
    pytester.makepyfile(
        """
        def test_same(cache_a, cache_b):
            assert (cache_a.port, cache_a.password) == (cache_b.port, cache_b.password)
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:randomly", "-p", "no:asyncio")
    result.assert_outcomes(passed=1)


def test_factory_rejects_an_unknown_backend_or_service() -> None:
    with pytest.raises(ValueError, match="backend='k8s' is not one of auto, docker, local, url"):
        postgres_server_factory(backend="k8s")
    with pytest.raises(ValueError, match="unknown service 'mongo'"):
        server_fixture_factory("mongo")


def test_factory_arguments_are_keyword_only() -> None:
    with pytest.raises(TypeError):
        postgres_server_factory("local")  # type: ignore[misc]
