"""Migrations against a real PostgreSQL: once, in one transaction with their row, under a lock."""

from __future__ import annotations

import hashlib
import secrets
import threading
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import make_conninfo
from pydantic import SecretStr

from autotel.config import Config, DatabaseConfig
from autotel.db import connect
from autotel.db import migrate as migrate_module
from autotel.db.migrate import (
    applied_migrations,
    apply_in_one_transaction,
    apply_in_transaction,
    bundled_migrations,
    migrate_site,
)
from autotel.errors import DatabaseError
from autotel.resources import bundled_dir


@pytest.fixture
def own_migrations(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A migrations folder of the test's own in place of the bundled one (for edits and failures)."""
    folder = tmp_path / "migrations"
    folder.mkdir()
    monkeypatch.setattr(migrate_module, "bundled_dir", lambda name: folder)
    return folder


def _rows(config: Config) -> list[tuple[str, str]]:
    with connect(config) as conn:
        return conn.execute("SELECT name, sha256 FROM schema_migrations ORDER BY name").fetchall()


def _exists(config: Config, table: str) -> bool:
    with connect(config) as conn:
        return conn.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone() == (True,)


def test_bundled_migrations_apply_once_with_their_hash(site: Config) -> None:
    names = ["0001_readings.sql", "0002_export_witness.sql"]
    assert migrate_site(site) == names
    folder = bundled_dir("migrations")
    assert _rows(site) == [(n, hashlib.sha256((folder / n).read_bytes()).hexdigest()) for n in names]
    query = "SELECT applied_at FROM schema_migrations ORDER BY name"
    with connect(site) as conn:
        applied_at = conn.execute(query).fetchall()
    assert migrate_site(site) == []
    with connect(site) as conn:
        assert conn.execute(query).fetchall() == applied_at


def test_readings_accepts_time_sensor_value_and_stamps_txid(migrated_site: Config) -> None:
    with connect(migrated_site) as conn:
        conn.execute(
            "INSERT INTO readings (time, sensor, value) VALUES (now(), 't1', 1.5), (now(), 't2', NULL)"
        )
        txid_now = conn.execute("SELECT pg_current_xact_id()").fetchone()
        assert txid_now is not None
        rows = conn.execute("SELECT sensor, value, txid FROM readings ORDER BY sensor").fetchall()
    assert [(r[0], r[1]) for r in rows] == [("t1", 1.5), ("t2", None)]
    assert rows[0][2] == rows[1][2] == txid_now[0]  # both rows carry their transaction's id


def test_export_range_scan_uses_the_txid_index(migrated_site: Config) -> None:
    with connect(migrated_site) as conn:
        conn.execute("SET enable_seqscan = off")
        plan = conn.execute(
            "EXPLAIN SELECT * FROM readings WHERE txid >= '5'::xid8 AND txid < '9'::xid8"
        ).fetchall()
    assert "readings_txid_idx" in " ".join(line[0] for line in plan)


def test_edited_applied_file_is_refused_naming_file_and_both_hashes(
    site: Config, own_migrations: Path
) -> None:
    original = b"CREATE TABLE a (x int);\n"
    (own_migrations / "0001_a.sql").write_bytes(original)
    assert migrate_site(site) == ["0001_a.sql"]
    (own_migrations / "0001_a.sql").write_bytes(b"CREATE TABLE a (x int, y int);\n")
    (own_migrations / "0002_b.sql").write_bytes(b"CREATE TABLE b (x int);\n")
    with pytest.raises(DatabaseError) as caught:
        migrate_site(site)
    message = str(caught.value)
    assert "0001_a.sql" in message
    assert hashlib.sha256(original).hexdigest() in message
    assert hashlib.sha256(b"CREATE TABLE a (x int, y int);\n").hexdigest() in message
    assert not _exists(site, "b")  # nothing after the refused file ran either


def test_failing_migration_leaves_no_row_and_no_partial_schema(
    site: Config, own_migrations: Path
) -> None:
    (own_migrations / "0001_ok.sql").write_text("CREATE TABLE ok (x int);\n")
    (own_migrations / "0002_bad.sql").write_text(
        "CREATE TABLE partial (x int);\n\nSELECT * FROM no_such_table;\n"
    )
    with pytest.raises(
        DatabaseError,
        match=r'0002_bad\.sql failed at line 3: relation "no_such_table" does not exist',
    ):
        migrate_site(site)
    assert [name for name, _ in _rows(site)] == ["0001_ok.sql"]
    assert _exists(site, "ok") and not _exists(site, "partial")
    (own_migrations / "0002_bad.sql").write_text(
        "CREATE TABLE partial (x int);\n"
    )  # the fix, never applied
    assert migrate_site(site) == ["0002_bad.sql"]


def test_concurrent_appliers_apply_each_file_exactly_once(
    site: Config, own_migrations: Path
) -> None:
    for index in range(1, 4):
        (own_migrations / f"000{index}_m.sql").write_text(
            f"CREATE TABLE m{index} (x int); SELECT pg_sleep(0.05);\n"
        )
    barrier = threading.Barrier(4)
    results: list[list[str]] = []
    errors: list[DatabaseError] = []

    def apply() -> None:
        barrier.wait()
        try:
            results.append(migrate_site(site))
        except DatabaseError as e:  # reported below; a thread must not swallow it
            errors.append(e)

    threads = [threading.Thread(target=apply) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert sorted(name for result in results for name in result) == [
        "0001_m.sql",
        "0002_m.sql",
        "0003_m.sql",
    ]
    assert len(_rows(site)) == 3


def test_package_migrations_are_all_or_nothing(migrated_site: Config) -> None:
    batch = [
        ("0101_unit.sql", "ALTER TABLE readings ADD COLUMN unit text NOT NULL DEFAULT '';"),
        ("0102_broken.sql", "ALTER TABLE no_such_table ADD COLUMN y int;"),
    ]
    with connect(migrated_site, autocommit=True) as conn:
        with pytest.raises(DatabaseError, match="0102_broken.sql failed"):
            apply_in_one_transaction(conn, batch)
        assert set(applied_migrations(conn)) == {"0001_readings.sql", "0002_export_witness.sql"}
        columns = conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'readings'"
        ).fetchall()
    assert ("unit",) not in columns


def test_package_migrations_apply_in_name_order_and_skip_applied(migrated_site: Config) -> None:
    batch: list[tuple[str, str | bytes]] = [
        ("0102_index.sql", b"CREATE INDEX readings_unit_idx ON readings (unit);"),
        ("0101_unit.sql", "ALTER TABLE readings ADD COLUMN unit text NOT NULL DEFAULT '';"),
    ]
    with connect(migrated_site) as conn:
        assert apply_in_one_transaction(conn, batch) == ["0101_unit.sql", "0102_index.sql"]
        assert apply_in_one_transaction(conn, [*batch, ("0103_x.sql", "SELECT 1;")]) == [
            "0103_x.sql"
        ]
        with pytest.raises(DatabaseError, match="0101_unit.sql was already applied with sha256"):
            apply_in_one_transaction(
                conn, [("0101_unit.sql", "ALTER TABLE readings ADD COLUMN unit2 int;")]
            )


def test_caller_transaction_variant_can_be_rolled_back(migrated_site: Config) -> None:
    with connect(migrated_site) as conn:
        with conn.transaction():
            assert apply_in_transaction(conn, [("0101_t.sql", "CREATE TABLE t (x int);")]) == [
                "0101_t.sql"
            ]
            raise psycopg.Rollback()
        assert "0101_t.sql" not in applied_migrations(conn)
        assert conn.execute("SELECT to_regclass('t')").fetchone() == (None,)


def test_misuse_of_the_transaction_variants_is_refused(migrated_site: Config) -> None:
    with connect(migrated_site) as conn:
        conn.execute("SELECT 1")  # an implicit transaction is now open
        with pytest.raises(DatabaseError, match="without an open transaction"):
            apply_in_one_transaction(conn, [("0101_t.sql", "SELECT 1;")])
    with (
        connect(migrated_site, autocommit=True) as conn,
        pytest.raises(DatabaseError, match="inside `with conn.transaction"),
    ):
        apply_in_transaction(conn, [("0101_t.sql", "SELECT 1;")])


def test_migration_that_commits_by_itself_is_refused(migrated_site: Config) -> None:
    with connect(migrated_site, autocommit=True) as conn:
        with pytest.raises(DatabaseError, match="ends the transaction itself"):
            apply_in_one_transaction(conn, [("0101_c.sql", "CREATE TABLE c (x int); COMMIT;")])
        assert "0101_c.sql" not in applied_migrations(conn)


def test_bundled_migrations_are_the_repository_files() -> None:
    assert [m.name for m in bundled_migrations()] == sorted(
        p.name for p in bundled_dir("migrations").glob("*.sql")
    )


def test_missing_privilege_is_a_database_error(site: Config, pg_dsn: str) -> None:
    role = "limited_" + secrets.token_hex(4)
    with psycopg.connect(pg_dsn, autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {role} LOGIN")
    try:
        limited = site.model_copy(
            update={"database": DatabaseConfig(dsn=SecretStr(make_conninfo(pg_dsn, user=role)))}
        )
        with pytest.raises(
            DatabaseError, match="applying migrations: permission denied for schema public"
        ):
            migrate_site(limited)
    finally:
        with psycopg.connect(pg_dsn, autocommit=True) as admin:
            admin.execute(f"DROP ROLE {role}")
