"""Shared fixtures: one real embedded PostgreSQL per test session, and fresh sites.

Each test that needs a database gets its own database in that server, so tests
never see each other's rows.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pgserver.postgres_server import get_server

from autotel.config import Config, load_config
from autotel.crypto.keys import generate_keypair
from autotel.site.create import SiteOptions, create_site


def pytest_configure(config: pytest.Config) -> None:
    """A SIGTERM (a CI time limit, `timeout`) ends the run like Ctrl+C, so the session's
    teardown still stops the embedded PostgreSQL instead of leaving it running."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


@contextlib.contextmanager
def _outside_pytest_tmp(prefix: str) -> Iterator[Path]:
    """A temporary folder for a PostgreSQL cluster, deliberately not under pytest's basetemp.

    As root, pgserver runs postgres as the user `pgserver` and opens every parent folder
    to it; every pytest session that starts meanwhile (suites run in parallel on this
    machine) chmods pytest's base folder back to 0700, locking that user out of a
    cluster mid-initdb.
    """
    root = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """DSN of the session's embedded PostgreSQL (the `postgres` database)."""
    with _outside_pytest_tmp("autotel-pg-") as root:
        server = get_server(root / "pgdata", cleanup_mode="delete")
        yield server.get_uri()
        server.cleanup()


@pytest.fixture
def pg_dsn(pg_server: str) -> Iterator[str]:
    """A fresh, empty database for one test; dropped afterwards."""
    name = "t_" + secrets.token_hex(6)
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield psycopg.conninfo.make_conninfo(pg_server, dbname=name)
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def admin_keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(private.pem, public.pem) of the admin, made once per session (RSA 3072 is slow)."""
    return generate_keypair(tmp_path_factory.mktemp("admin"))


@pytest.fixture(scope="session")
def stranger_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private key no site trusts (RSA 2048: only ever refused, so speed over strength)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = tmp_path_factory.mktemp("stranger") / "private.pem"
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    return path


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


@pytest.fixture
def migrated_site(site: Config) -> Config:
    """The `site` fixture with the bundled migrations applied (`readings` exists)."""
    from autotel.db.migrate import migrate_site

    migrate_site(site)
    return site


@pytest.fixture
def embedded_site(admin_keys: tuple[Path, Path]) -> Iterator[Config]:
    """A site without `database.dsn`: it uses its own embedded PostgreSQL, started on demand
    by `autotel.db.dsn_for` in a fresh state dir, and stopped (`stop_embedded`) afterwards.
    A first start runs initdb (seconds): use `site` unless the embedded server is the point."""
    from autotel.db import stop_embedded

    with _outside_pytest_tmp("autotel-site-") as root:
        created = create_site(
            root / "site", SiteOptions(client_id="plant_A", public_keys=[admin_keys[1]], pin="4321")
        )
        config = load_config(created.config_path)
        try:
            yield config
        finally:
            stop_embedded(config)
