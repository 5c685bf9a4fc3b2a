"""The export path against a real PostgreSQL: exact JSON, exactly once, since, failures."""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import random
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from autotel.config import Config
from autotel.db.migrate import migrate_site
from autotel.errors import DatabaseError
from autotel.export.archive import MemberSink
from autotel.export.cursor import ExportRequest, SnapshotMark, decode_cursor
from autotel.export.snapshot import copy_part, copy_statement
from autotel.export.writer import ExportResult, export_readings

TRICKY_TEXT = [
    'quote " and \\ backslash',
    "tab\there",
    "new\nline and\r\nCRLF",
    "ünïcödé Київ 日本 🚀",
    "\x01\x02 control \x1f",
    "\\.",
    "",
    "'single'",
    "comma, semicolon; pipe|",
    '{"json": [1]}',
    "\\N",
    "NULL",
]
TRICKY_FLOATS = [
    0.0,
    -0.0,
    1.5,
    -2.25,
    1e-300,
    5e-324,
    1.7976931348623157e308,
    -1.7976931348623157e308,
    0.1,
    1 / 3,
    123456789.123456789,
    float("inf"),
    float("-inf"),
    float("nan"),
    None,
]
TRICKY_TIMES = [
    "2026-01-01T10:00:00+02:00",
    "1970-01-01T00:00:00Z",
    "2026-06-30T23:59:59.999999-07:30",
    "2000-02-29T12:00:00.5+05:45",
    "9999-12-31T23:59:59Z",
    "0001-01-01T00:00:00Z",
]


@pytest.fixture
def db_site(site: Config) -> Config:
    migrate_site(site)
    return site


def _dsn(config: Config) -> str:
    return config.database.dsn.get_secret_value()


def _lines(folder: Path, result: ExportResult) -> list[dict[str, Any]]:
    data = (folder / result.archive).read_bytes()
    assert hashlib.sha256(data).hexdigest() == result.sha256 and len(data) == result.size
    return [json.loads(line) for line in gzip.decompress(data).decode("utf-8").splitlines()]


def _float_from_json(value: Any) -> float | None:
    if value is None:
        return None
    return float(value)  # numbers, and PostgreSQL's "NaN" / "Infinity" / "-Infinity" strings


def test_every_value_round_trips_exactly(db_site: Config, tmp_path: Path) -> None:
    folder = tmp_path / "exports"
    rows: list[tuple[str, str, float | None]] = [
        (t, s, 1.0) for t in TRICKY_TIMES for s in TRICKY_TEXT[:3]
    ]
    rows += [(TRICKY_TIMES[0], s, 1.0) for s in TRICKY_TEXT] + [
        (TRICKY_TIMES[1], "f", v) for v in TRICKY_FLOATS
    ]
    with psycopg.connect(_dsn(db_site)) as conn:
        for row in rows:
            conn.execute("INSERT INTO readings (time, sensor, value) VALUES (%s, %s, %s)", row)
        stored = {r[0]: r for r in conn.execute("SELECT id, time, sensor, value FROM readings")}
    result = export_readings(_dsn(db_site), folder, ExportRequest())
    lines = _lines(folder, result)
    assert result.records == len(lines) == len(rows)
    for line in lines:
        assert set(line) == {"id", "time", "sensor", "value", "txid"}
        _, moment, sensor, value = stored[line["id"]]
        assert datetime.fromisoformat(line["time"]) == moment
        assert datetime.fromisoformat(line["time"]).utcoffset() is not None
        assert line["sensor"] == sensor
        exported = _float_from_json(line["value"])
        if value is None:
            assert exported is None
        elif math.isnan(value):
            assert exported is not None and math.isnan(exported)
        else:
            assert exported is not None and exported == value
            # Only a zero may lose its sign (json.loads reads "-0" as the int 0).
            assert math.copysign(1, exported) == math.copysign(1, value) or value == 0


def test_cursor_then_since_then_nothing_new(db_site: Config, tmp_path: Path) -> None:
    folder = tmp_path / "exports"
    now = datetime.now(UTC)
    with psycopg.connect(_dsn(db_site)) as conn:
        conn.execute(
            "INSERT INTO readings (time, sensor, value) SELECT %s - i * interval '1 hour', 's', i "
            "FROM generate_series(1, 10) i",
            (now,),
        )
    first = export_readings(_dsn(db_site), folder, ExportRequest())
    assert first.records == 10
    empty = export_readings(_dsn(db_site), folder, ExportRequest(after=decode_cursor(first.cursor)))
    assert empty.records == 0 and gzip.decompress((folder / empty.archive).read_bytes()) == b""
    since = export_readings(
        _dsn(db_site), folder, ExportRequest(since=now - timedelta(hours=3, minutes=30))
    )
    assert sorted(line["value"] for line in _lines(folder, since)) == [1, 2, 3]
    assert decode_cursor(since.cursor).xmax >= decode_cursor(first.cursor).xmax


@pytest.mark.parametrize("connections", [1, 2])
def test_exactly_once_while_writers_insert(
    db_site: Config, tmp_path: Path, connections: int
) -> None:
    """Writers insert (some late, some back-filling old times, some in slow transactions)
    during many exports; the archives together hold every row exactly once."""
    dsn, folder = _dsn(db_site), tmp_path / "exports"
    stop = threading.Event()
    errors: list[BaseException] = []

    def writer(seed: int) -> None:
        rng = random.Random(seed)
        try:
            with psycopg.connect(dsn) as conn:
                while not stop.is_set():
                    with conn.transaction():
                        for _ in range(rng.randint(1, 20)):
                            age = timedelta(days=rng.choice([0, 0, 30]))
                            conn.execute(
                                "INSERT INTO readings (time, sensor, value) "
                                "VALUES (now() - %s, %s, %s)",
                                (age, f"w{seed}", rng.random()),
                            )
                        if rng.random() < 0.2:
                            stop.wait(0.05)  # a transaction that stays open across an export
        except psycopg.Error as e:
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    seen: list[int] = []
    request = ExportRequest()
    try:
        for _ in range(12):
            result = export_readings(dsn, folder, request, connections=connections)
            seen += [line["id"] for line in _lines(folder, result)]
            request = ExportRequest(after=decode_cursor(result.cursor))
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert not errors
    result = export_readings(dsn, folder, request, connections=connections)
    seen += [line["id"] for line in _lines(folder, result)]
    with psycopg.connect(dsn) as conn:
        all_ids = [r[0] for r in conn.execute("SELECT id FROM readings")]
    assert len(all_ids) > 100
    assert len(seen) == len(set(seen)), "a row was exported twice"
    assert sorted(seen) == sorted(all_ids), "a row was never exported"


def test_an_open_transaction_does_not_hold_back_other_rows(db_site: Config, tmp_path: Path) -> None:
    """Rows committed around a long open transaction are exported at once; its own rows
    follow, exactly once, in the first export after it commits."""
    dsn, folder = _dsn(db_site), tmp_path / "exports"
    first = export_readings(dsn, folder, ExportRequest())
    with psycopg.connect(dsn) as slow, psycopg.connect(dsn, autocommit=True) as quick:
        slow.execute("INSERT INTO readings (time, sensor, value) VALUES (now(), 'slow', 1)")
        quick.execute("INSERT INTO readings (time, sensor, value) VALUES (now(), 'quick', 2)")
        second = export_readings(dsn, folder, ExportRequest(after=decode_cursor(first.cursor)))
        assert [line["sensor"] for line in _lines(folder, second)] == ["quick"]
        slow.commit()
        third = export_readings(dsn, folder, ExportRequest(after=decode_cursor(second.cursor)))
        assert [line["sensor"] for line in _lines(folder, third)] == ["slow"]
    last = export_readings(dsn, folder, ExportRequest(after=decode_cursor(third.cursor)))
    assert last.records == 0


def test_cursor_from_another_database_exports_everything(db_site: Config, tmp_path: Path) -> None:
    """Losing rows is worse than sending some twice: a cursor this database cannot have
    issued (it was re-created) starts a full export."""
    with psycopg.connect(_dsn(db_site)) as conn:
        conn.execute(
            "INSERT INTO readings (time, sensor, value) VALUES (now(), 'a', 1), (now(), 'b', 2)"
        )
    result = export_readings(
        _dsn(db_site), tmp_path / "exports", ExportRequest(after=SnapshotMark(2**40, 2**40))
    )
    assert result.reset and result.records == 2
    follow = export_readings(
        _dsn(db_site), tmp_path / "exports", ExportRequest(after=decode_cursor(result.cursor))
    )
    assert not follow.reset and follow.records == 0


def test_a_stopped_copy_leaves_the_connection_usable(db_site: Config, tmp_path: Path) -> None:
    """When one reader fails, the others stop midway: their COPY is cancelled and drained."""
    with psycopg.connect(_dsn(db_site)) as conn:
        conn.execute(
            "INSERT INTO readings (time, sensor, value) "
            "SELECT now(), 's', i FROM generate_series(1, 50000) i"
        )
    with psycopg.connect(_dsn(db_site)) as conn, (tmp_path / "out.gz").open("wb") as out:
        statement = copy_statement(ExportRequest(), (None, None))
        with pytest.raises(InterruptedError):
            copy_part(conn, statement, MemberSink(out), lambda: True)
        conn.rollback()
        assert conn.execute("SELECT count(*) FROM readings").fetchone() == (50000,)


def test_a_failed_export_leaves_no_archive(site: Config, tmp_path: Path) -> None:
    folder = tmp_path / "exports"
    with pytest.raises(DatabaseError, match="readings"):
        export_readings(_dsn(site), folder, ExportRequest())  # not migrated: no table
    with psycopg.connect(_dsn(site)) as conn:  # a table the COPY itself fails on (no txid)
        conn.execute("CREATE TABLE readings (time timestamptz, sensor text, value float8)")
        conn.execute("INSERT INTO readings VALUES (now(), 's', 1)")
    with pytest.raises(DatabaseError, match="txid"):
        export_readings(_dsn(site), folder, ExportRequest(after=SnapshotMark(1, 1)))
    assert list(folder.iterdir()) == []
