"""Reading `readings` as JSON lines from one consistent snapshot, over one or more connections.

PostgreSQL builds each line (`row_to_json`), and `COPY ... TO STDOUT` streams them.
CSV format with delimiter and quote characters that JSON text never holds raw
(\\x01 and \\x02; JSON escapes every control character) passes each line through
byte for byte; text format would double every backslash.

The first connection opens a REPEATABLE READ transaction, reads its snapshot
(`pg_current_snapshot()`, the next cursor) and exports it; the others
adopt it (`SET TRANSACTION SNAPSHOT`), so all of them see exactly the same rows.
The table's pages are split between the connections by `ctid` range (a TID range
scan, PostgreSQL 14+), so together they read each row once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg import pq, sql

from autotel.export.archive import LineBatcher, MemberSink
from autotel.export.cursor import ExportRequest, SnapshotMark

COPY_OPTIONS = "FORMAT csv, DELIMITER E'\\x01', QUOTE E'\\x02'"
TABLE = "readings"


@dataclass(frozen=True)
class Snapshot:
    mark: SnapshotMark
    taken_at: datetime
    pages: int
    snapshot_id: str
    system: str  # the cluster's system_identifier: a cursor is only meaningful in it


def open_snapshot(conn: psycopg.Connection) -> Snapshot:
    """Start the export transaction on `conn` and read its snapshot."""
    _begin(conn)
    row = conn.execute(
        "SELECT pg_current_snapshot()::text, now(),"
        " (pg_relation_size(%s::regclass) / current_setting('block_size')::int)::bigint,"
        " pg_export_snapshot(), (SELECT system_identifier FROM pg_control_system())::text",
        (TABLE,),
    ).fetchone()
    assert row is not None
    return Snapshot(SnapshotMark.parse(str(row[0])), row[1], int(row[2]), str(row[3]), str(row[4]))


def adopt_snapshot(conn: psycopg.Connection, snapshot: Snapshot) -> None:
    _begin(conn)
    conn.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot.snapshot_id)))


def _begin(conn: psycopg.Connection) -> None:
    conn.autocommit = False
    conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
    conn.read_only = True  # psycopg opens the transaction with these at the next statement
    # Lines must not depend on the site's settings: UTC offsets, shortest exact floats.
    conn.execute("SET LOCAL TimeZone = 'UTC'")
    conn.execute("SET LOCAL extra_float_digits = 1")
    conn.execute("SET LOCAL client_encoding = 'UTF8'")


def page_ranges(pages: int, parts: int) -> list[tuple[int | None, int | None]]:
    """Split pages [0, pages) into `parts` ctid ranges; the last is open-ended."""
    if parts <= 1 or pages < parts:
        return [(None, None)]
    step = pages // parts
    bounds = [i * step for i in range(1, parts)]
    starts: list[int | None] = [None, *bounds]
    ends: list[int | None] = [*bounds, None]
    return list(zip(starts, ends, strict=True))


def copy_statement(request: ExportRequest, pages: tuple[int | None, int | None]) -> sql.Composed:
    """The COPY of one part: the rows this snapshot sees, minus those the cursor's saw,
    or those after `since`. (The snapshot itself hides what it does not see.)

    Values are literals (quoted by psycopg), since COPY takes no bound parameters.
    """
    where: list[sql.Composable] = [sql.SQL("true")]
    if request.after is not None:
        where.append(sql.SQL("r.txid >= {}::xid8").format(sql.Literal(str(request.after.xmin))))
        where.append(
            sql.SQL("NOT pg_visible_in_snapshot(r.txid, {}::pg_snapshot)").format(
                sql.Literal(request.after.text())
            )
        )
    if request.since is not None:
        where.append(sql.SQL("r.time > {}").format(sql.Literal(request.since)))
    low, high = pages
    if low is not None:
        where.append(sql.SQL("r.ctid >= {}::tid").format(sql.Literal(f"({low},0)")))
    if high is not None:
        where.append(sql.SQL("r.ctid < {}::tid").format(sql.Literal(f"({high},0)")))
    return sql.SQL(
        "COPY (SELECT row_to_json(r)::text FROM {} r WHERE {}) TO STDOUT WITH ({})"
    ).format(sql.Identifier(TABLE), sql.SQL(" AND ").join(where), sql.SQL(COPY_OPTIONS))


def copy_part(
    conn: psycopg.Connection,
    statement: sql.Composed,
    sink: MemberSink,
    should_stop: Callable[[], bool],
) -> int:
    """Stream one COPY into gzip members; return its line count.

    Rows are read with libpq's own `PQgetCopyData` (psycopg's `pq` layer) rather
    than `cursor.copy()`: one C call per row instead of a Python generator round
    trip, which halves this process's CPU per row and lets the readers of the
    other connections run meanwhile. The transaction is psycopg's, as before.
    """
    pgconn = conn.pgconn
    pgconn.send_query(statement.as_bytes(conn))
    started = pgconn.get_result()
    if started is None or started.status != pq.ExecStatus.COPY_OUT:
        _drain_results(pgconn)
        raise psycopg.OperationalError(_result_error(started, "COPY did not start"))
    batcher = LineBatcher(sink)
    while True:
        size, block = pgconn.get_copy_data(0)
        if size < 0:
            break
        batcher.add(block)
        if should_stop():
            _abandon(conn)
            raise InterruptedError("export stopped")
    finished = pgconn.get_result()
    _drain_results(pgconn)
    if finished is None or finished.status != pq.ExecStatus.COMMAND_OK:
        raise psycopg.OperationalError(_result_error(finished, "COPY did not finish"))
    batcher.flush()
    return batcher.lines


def _result_error(result: pq.abc.PGresult | None, fallback: str) -> str:
    message = result.error_message.decode("utf-8", "replace").strip() if result else ""
    return message or fallback


def _drain_results(pgconn: pq.abc.PGconn) -> None:
    while pgconn.get_result() is not None:
        pass


def _abandon(conn: psycopg.Connection) -> None:
    """Cancel a COPY midway and read what is left, so the connection can be closed cleanly."""
    conn.cancel_safe()
    try:
        while conn.pgconn.get_copy_data(0)[0] >= 0:
            pass
    except psycopg.OperationalError:
        pass
    _drain_results(conn.pgconn)


def copy_parts(
    conns: list[psycopg.Connection], request: ExportRequest, snapshot: Snapshot, sink: MemberSink
) -> int:
    """Run one COPY per connection in parallel threads; the first error wins."""
    ranges = page_ranges(snapshot.pages, len(conns))
    failed = threading.Event()
    counts = [0] * len(ranges)
    errors: list[BaseException] = []

    def run(index: int) -> None:
        statement = copy_statement(request, ranges[index])
        try:
            counts[index] = copy_part(conns[index], statement, sink, failed.is_set)
        except BaseException as e:  # noqa: BLE001 - re-raised below, once every thread ended
            errors.append(e)
            failed.set()

    threads = [
        threading.Thread(target=run, args=(i,), name=f"export-{i}") for i in range(1, len(ranges))
    ]
    for thread in threads:
        thread.start()
    run(0)
    for thread in threads:
        thread.join()
    if errors:
        raise next((e for e in errors if not isinstance(e, InterruptedError)), errors[0])
    return sum(counts)
