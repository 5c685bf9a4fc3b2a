"""Pure parts of the database layer: migration planning, DSN redaction, the waiting lock."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import pytest

from autotel.db import redact
from autotel.db.connection import one_line
from autotel.db.plan import Migration, in_order, pending
from autotel.errors import DatabaseError, StateError
from autotel.lockfile import ProcessLock


def test_pending_keeps_name_order_and_skips_applied() -> None:
    a, b, c = (
        Migration.of(n, f"SELECT {i};")
        for i, n in enumerate(["0001_a.sql", "0002_b.sql", "0003_c.sql"])
    )
    assert pending([c, a, b], {}) == [a, b, c]
    assert pending([c, a, b], {"0001_a.sql": a.sha256, "0099_other.sql": "x"}) == [b, c]
    assert pending([a], {"0001_a.sql": a.sha256}) == []


def test_text_and_bytes_hash_alike_and_a_bom_is_not_executed() -> None:
    text = "CREATE TABLE t (x int);\n"
    assert Migration.of("m.sql", text).sha256 == hashlib.sha256(text.encode()).hexdigest()
    assert Migration.of("m.sql", text.encode()) == Migration.of("m.sql", text)
    with_bom = Migration.of("m.sql", b"\xef\xbb\xbf" + text.encode())
    assert with_bom.sql == text and with_bom.sha256 != Migration.of("m.sql", text).sha256


@pytest.mark.parametrize(
    ("migrations", "message"),
    [
        ([Migration.of("0001_a.sql", "x"), Migration.of("0001_a.sql", "y")], "listed twice"),
        ([Migration.of("sub/0001_a.sql", "x")], "plain file name"),
        ([Migration.of("..\\0001_a.sql", "x")], "plain file name"),
        ([Migration.of("", "x")], "plain file name"),
    ],
)
def test_bad_migration_lists_are_refused(migrations: list[Migration], message: str) -> None:
    with pytest.raises(DatabaseError, match=message):
        in_order(migrations)


def test_edited_migration_is_refused_with_both_hashes() -> None:
    old, new = Migration.of("0001_a.sql", "old"), Migration.of("0001_a.sql", "new")
    with pytest.raises(DatabaseError) as caught:
        pending([new], {"0001_a.sql": old.sha256})
    assert old.sha256 in str(caught.value) and new.sha256 in str(caught.value)


def test_non_utf8_migration_is_a_clear_error() -> None:
    with pytest.raises(DatabaseError, match="0001_a.sql: not UTF-8"):
        _ = Migration("0001_a.sql", b"SELECT '\xff';").sql


@pytest.mark.parametrize(
    ("dsn", "shown"),
    [
        ("postgresql://plant:pw123@db.example:5432/tele", "db.example"),
        ("host=db.example user=plant password=pw123 dbname=tele", "db.example"),
        ("host=db.example password=pw123 broken", "password=***"),  # unparseable: masked by pattern
        ("postgresql://plant:pw123@db.example/tele?sslmode=x&&", "db.example"),
    ],
)
def test_redact_never_shows_the_password(dsn: str, shown: str) -> None:
    assert "pw123" not in redact(dsn) and shown in redact(dsn)


def test_one_line_joins_lines_and_masks_the_password() -> None:
    error = RuntimeError('connection failed:\n\tpassword "pw123" refused\n')
    assert one_line(error, "host=x password=pw123") == 'connection failed: password "***" refused'


def test_acquire_waiting_times_out_then_gets_the_released_lock(tmp_path: Path) -> None:
    holder = ProcessLock(tmp_path / "x.lock", "test")
    holder.acquire()
    with pytest.raises(StateError, match="waited 0.1 s for the test lock"):
        ProcessLock(tmp_path / "x.lock", "test").acquire_waiting(0.1)
    waiter = ProcessLock(tmp_path / "x.lock", "test")
    got = threading.Event()

    def acquire_then_signal() -> None:
        waiter.acquire_waiting(30)
        got.set()

    thread = threading.Thread(target=acquire_then_signal)
    thread.start()
    assert not got.wait(0.2)  # still held
    holder.release()
    thread.join(30)
    assert got.is_set()
    waiter.release()


def test_a_short_password_is_masked_without_mangling_words() -> None:
    error = Exception("connection to server on port 5432 failed: password p rejected")
    assert one_line(error, "postgresql://u:p@h/db") == (
        "connection to server on port 5432 failed: password *** rejected"
    )
