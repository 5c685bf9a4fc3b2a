"""One export: snapshot, parallel COPY, gzip members, an atomically written archive.

Before reading, the database is compared with the site's export mark
(`autotel.export.mark`) and the request's cursor with both; a cursor that does not
fit is answered with every row (`reset` says why): losing rows is worse than
sending some twice. The cursor handed out names the database and epoch it fits, and
the witness's count once it went out.
The database's export witness (`autotel.export.witness`) is read and advanced over
a connection of its own, outside the snapshot's read-only transaction; it is
advanced, and the mark recorded, before the archive gets its final name, so no
archive (and so no cursor) goes out that the witness has not counted.

Memory stays flat whatever the row count: each connection holds one member buffer
(`MEMBER_BYTES`), and the archive goes straight to disk. The archive appears under
its final name only when complete (`autotel.fsutil.atomic_writer`).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import psycopg

from autotel.errors import DatabaseError
from autotel.export.archive import MemberSink, archive_name
from autotel.export.cursor import ExportRequest, encode_cursor
from autotel.export.mark import (
    DatabaseState,
    ExportMark,
    MarkStore,
    check_database,
    cursor_misfit,
    record_handed_out,
)
from autotel.export.snapshot import adopt_snapshot, copy_parts, open_snapshot
from autotel.export.witness import Witness
from autotel.fsutil import atomic_writer
from autotel.timeutil import iso

DEFAULT_CONNECTIONS = 2

log = logging.getLogger("autotel.export")


@dataclass(frozen=True)
class ExportResult:
    archive: str
    records: int
    size: int
    sha256: str
    period_end: str
    cursor: str
    snapshot: str
    reset: str = ""  # why the cursor did not fit and every row was exported; "" if it did

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def export_readings(
    dsn: str,
    folder: Path,
    request: ExportRequest,
    connections: int = DEFAULT_CONNECTIONS,
    marks: MarkStore | None = None,
) -> ExportResult:
    """Write the rows `request` selects into a new archive in `folder`.

    `marks` is the site's export mark; without it (tests, benchmarks) only the
    cursor's own checks apply, no witness is used, and the cursor handed out carries
    no identity (v1).

    Raises:
        DatabaseError: PostgreSQL is unreachable or the query failed (no archive is left).
        OSError, StateError: the export mark cannot be written (no archive is left, so no
            cursor is handed out).
    """
    folder.mkdir(parents=True, exist_ok=True)
    try:
        with contextlib.ExitStack() as stack:
            conns = [
                stack.enter_context(psycopg.connect(dsn, application_name="autotel-export"))
                for _ in range(max(1, connections))
            ]
            snapshot = open_snapshot(conns[0])
            for conn in conns[1:]:
                adopt_snapshot(conn, snapshot)
            witness = _witness(stack, dsn) if marks else None
            db = DatabaseState(snapshot.system, snapshot.mark.xmax)
            mark = check_database(marks, db, witness, request.origin) if marks else None
            request, reset = _checked_against(request, mark, db)
            stamp = snapshot.taken_at.strftime("%Y%m%dT%H%M%S%fZ")
            name = archive_name(stamp, snapshot.mark.xmax)
            with atomic_writer(folder / name) as out:
                sink = MemberSink(out)
                records = copy_parts(conns, request, snapshot, sink)
                if sink.size == 0:
                    sink.add(b"")  # an empty export is still a valid gzip file
                counted = record_handed_out(marks, db, witness) if marks else None
    except psycopg.Error as e:
        raise DatabaseError(f"export of readings failed: {str(e).strip()}") from e
    return ExportResult(
        archive=name,
        records=records,
        size=sink.size,
        sha256=sink.hexdigest(),
        period_end=iso(snapshot.taken_at),
        cursor=encode_cursor(snapshot.mark,
                             replace(mark.origin, witness=counted) if mark else None),
        snapshot=snapshot.mark.text(),
        reset=reset,
    )


def _witness(stack: contextlib.ExitStack, dsn: str) -> Witness:
    """The witness over a connection of its own: autocommit, so its count is committed
    before the mark records it, and apart from the snapshot handed out."""
    conn = stack.enter_context(
        psycopg.connect(dsn, application_name="autotel-export", autocommit=True)
    )
    return Witness(conn)


def _checked_against(
    request: ExportRequest, mark: ExportMark | None, db: DatabaseState
) -> tuple[ExportRequest, str]:
    """`request`, or every row when its cursor does not fit this database (and why)."""
    reason = cursor_misfit(request, mark, db)
    if not reason:
        return request, ""
    log.warning("export cursor does not fit (%s); exporting every row", reason)
    return ExportRequest(), reason
