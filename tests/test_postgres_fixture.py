"""The fleet tests' PostgreSQL (tests/postgres.py): a real server from Debian's packages, on loopback,
asking a password, that a test can stop and start again, and that leaves nothing running."""

from __future__ import annotations

import psycopg
import pytest


def test_a_fresh_database_takes_the_password_and_refuses_without_it(postgres) -> None:
    url = postgres.fresh_database()
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT current_database(), host(inet_server_addr())").fetchone()[1] == "127.0.0.1"
    wrong = url.replace(postgres.password, "wrong")
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(wrong)


def test_a_stopped_server_refuses_and_comes_back_with_its_data(postgres_server) -> None:
    url = postgres_server.fresh_database()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE kept (n int); INSERT INTO kept VALUES (7)")
    postgres_server.stop()
    assert not postgres_server.running
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(url, connect_timeout=5)
    postgres_server.start()
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT n FROM kept").fetchone() == (7,)


def test_close_stops_the_server_and_removes_its_folder() -> None:
    from tests.postgres import PostgresServer

    server = PostgresServer()
    root = server.root
    server.close()
    assert not root.exists()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(server.url(), connect_timeout=5)
