"""Shared fixtures: one real embedded PostgreSQL per test session, and fresh sites.

Each test that needs a database gets its own database in that server, so tests
never see each other's rows.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pgserver
import psycopg
import pytest

from autotel.config import Config, load_config
from autotel.crypto.keys import generate_keypair
from autotel.site.create import SiteOptions, create_site


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """DSN of the session's embedded PostgreSQL (the `postgres` database)."""
    server = pgserver.get_server(tmp_path_factory.mktemp("pg") / "pgdata", cleanup_mode="delete")
    yield server.get_uri()
    server.cleanup()


@pytest.fixture
def pg_dsn(pg_server: str) -> Iterator[str]:
    """A fresh, empty database for one test; dropped afterwards."""
    name = "t_" + secrets.token_hex(6)
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    info = psycopg.conninfo.conninfo_to_dict(pg_server)
    info["dbname"] = name
    yield psycopg.conninfo.make_conninfo(**info)
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def admin_keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(private.pem, public.pem) of the admin, made once per session (RSA 3072 is slow)."""
    return generate_keypair(tmp_path_factory.mktemp("admin"))


@pytest.fixture
def site(tmp_path: Path, pg_dsn: str, admin_keys: tuple[Path, Path]) -> Config:
    """A site in `tmp_path/site` on its own database, trusting the session's admin key."""
    created = create_site(
        tmp_path / "site",
        SiteOptions(client_id="plant_A", public_keys=[admin_keys[1]], pin="4321", dsn=pg_dsn,
                    agent_port=0, portal_port=0),
    )
    return load_config(created.config_path)


@pytest.fixture
def bare_site(tmp_path: Path, admin_keys: tuple[Path, Path]) -> Config:
    """A site without a database, for tests of the spool, runner and CLI."""
    created = create_site(tmp_path / "site",
                          SiteOptions(client_id="plant_A", public_keys=[admin_keys[1]], pin="4321"))
    return load_config(created.config_path)
