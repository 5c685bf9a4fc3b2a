"""Apply SQL migrations, each at most once, with its bookkeeping row in the same transaction.

Two entry points:

- `migrate_site(config)`: the migrations shipped with autotel (`migrations/*.sql`),
  one transaction per file, as `autotel db migrate` does.
- `apply_in_one_transaction(conn, migrations)`: an update package's migrations, all
  of them in ONE transaction, committed on return; either every one is applied or none.
  `apply_in_transaction(conn, migrations)` is the same inside a transaction the caller
  already holds and ends itself, e.g. to roll the schema back together with the
  files when a later apply step fails.

Every applier first takes a transaction-scoped advisory lock, so two of them (a
runner's `migrate` step and an operator's `autotel db migrate`) cannot both apply
the same file; the second one waits, then finds it recorded and skips it. What is
recorded (name, sha256 of the exact bytes, applied_at) is decided in `plan`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus

from autotel.config import Config
from autotel.db.connection import connect, one_line
from autotel.db.plan import Migration, in_order, pending
from autotel.errors import DatabaseError
from autotel.resources import bundled_dir

# pg_advisory_xact_lock key shared by every autotel applier: "autotel!" as a bigint.
LOCK_KEY = int.from_bytes(b"autotel!", "big")

_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    name       text PRIMARY KEY,
    sha256     text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)"""


def bundled_migrations() -> list[Migration]:
    """The `*.sql` files shipped with autotel, in name order."""
    folder = bundled_dir("migrations")
    return in_order(Migration(path.name, path.read_bytes()) for path in folder.glob("*.sql"))


def migrate_site(config: Config) -> list[str]:
    """Apply the bundled migrations not yet applied to the site database; their names.

    Cheap when nothing is new: one query and no lock.

    Raises:
        DatabaseError: unreachable database, an edited applied file, a failing migration
            (that file and its row are rolled back; earlier files stay applied).
    """
    migrations = bundled_migrations()
    with connect(config, autocommit=True) as conn, _wrapped("migrating the site database"):
        if not pending(migrations, applied_migrations(conn)):
            return []
        applied: list[str] = []
        for migration in migrations:
            applied += apply_in_one_transaction(conn, [(migration.name, migration.content)])
        return applied


def apply_in_one_transaction(
    conn: psycopg.Connection[Any], migrations: Iterable[tuple[str, str | bytes]]
) -> list[str]:
    """Apply (name, SQL) pairs in name order in ONE transaction, committed on return.

    Migrations already applied with the same content are skipped; returns the names
    applied now. On any error everything of this call is rolled back.

    Raises:
        DatabaseError: `conn` has a transaction open (use `apply_in_transaction`), a
            migration was applied before with other content, or one fails.
    """
    if conn.info.transaction_status != TransactionStatus.IDLE:
        raise DatabaseError(
            "apply_in_one_transaction needs a connection without an open transaction, or its "
            "commit would not be final; use apply_in_transaction inside your own transaction"
        )
    with conn.transaction():
        return apply_in_transaction(conn, migrations)


def apply_in_transaction(
    conn: psycopg.Connection[Any], migrations: Iterable[tuple[str, str | bytes]]
) -> list[str]:
    """Like `apply_in_one_transaction`, inside the caller's transaction; never commits.

    Use it within `with conn.transaction():` (or on a non-autocommit connection, then
    `conn.commit()` / `conn.rollback()`). The advisory lock is held until that
    transaction ends, so keep it short. After a DatabaseError the transaction is
    aborted and must be rolled back.

    Raises:
        DatabaseError: autocommit with no transaction open (each statement would commit
            on its own), an aborted transaction, an edited applied migration, or a
            failing migration.
    """
    status = conn.info.transaction_status
    if status == TransactionStatus.INERROR or (
        conn.autocommit and status == TransactionStatus.IDLE
    ):
        raise DatabaseError(
            "apply_in_transaction needs an open, healthy transaction: "
            "call it inside `with conn.transaction():` and roll back after an error"
        )
    todo = in_order(Migration.of(name, body) for name, body in migrations)
    with _wrapped("applying migrations"):
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
        conn.execute(_CREATE_TABLE)
        names = []
        for migration in pending(todo, applied_migrations(conn)):
            _run(conn, migration)
            names.append(migration.name)
        return names


def applied_migrations(conn: psycopg.Connection[Any]) -> dict[str, str]:
    """name -> sha256 of every recorded migration; empty before the first one."""
    row = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
    if not row or not row[0]:
        return {}
    return dict(conn.execute("SELECT name, sha256 FROM schema_migrations").fetchall())


def _run(conn: psycopg.Connection[Any], migration: Migration) -> None:
    text = migration.sql
    try:
        conn.execute(text)
    except psycopg.Error as e:
        raise DatabaseError(
            f"migration {migration.name} failed{_where(e, text)}: {one_line(e)}; "
            "its transaction is rolled back, so nothing of it is applied"
        ) from e
    if conn.info.transaction_status != TransactionStatus.INTRANS:
        raise DatabaseError(
            f"migration {migration.name} ends the transaction itself (COMMIT or ROLLBACK in the "
            "file); remove those statements: autotel runs each migration in its own transaction"
        )
    conn.execute(
        "INSERT INTO schema_migrations (name, sha256) VALUES (%s, %s)",
        (migration.name, migration.sha256),
    )


@contextlib.contextmanager
def _wrapped(doing: str) -> Iterator[None]:
    """psycopg errors outside a migration's own SQL (lost connection, missing privilege)."""
    try:
        yield
    except psycopg.Error as e:
        raise DatabaseError(f"{doing}: {one_line(e)}") from e


def _where(error: psycopg.Error, text: str) -> str:
    """' at line N' from the error position PostgreSQL reports, when it reports one."""
    position = error.diag.statement_position if error.diag else None
    if not position or not position.isdigit():
        return ""
    return f" at line {text.count(chr(10), 0, int(position) - 1) + 1}"
