"""One export: snapshot, parallel COPY, gzip members, an atomically written archive.

Memory stays flat whatever the row count: each connection holds one member buffer
(`MEMBER_BYTES`), and the archive goes straight to disk. The archive appears under
its final name only when complete (`autotel.fsutil.atomic_writer`).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psycopg

from autotel.errors import DatabaseError
from autotel.export.archive import MemberSink, archive_name
from autotel.export.cursor import ExportRequest, SnapshotMark, encode_cursor
from autotel.export.snapshot import adopt_snapshot, copy_parts, open_snapshot
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
    reset: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def export_readings(
    dsn: str, folder: Path, request: ExportRequest, connections: int = DEFAULT_CONNECTIONS
) -> ExportResult:
    """Write the rows `request` selects into a new archive in `folder`.

    Raises:
        DatabaseError: PostgreSQL is unreachable or the query failed (no archive is left).
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
            request, reset = _checked_against(request, snapshot.mark)
            stamp = snapshot.taken_at.strftime("%Y%m%dT%H%M%S%fZ")
            name = archive_name(stamp, snapshot.mark.xmax)
            with atomic_writer(folder / name) as out:
                sink = MemberSink(out)
                records = copy_parts(conns, request, snapshot, sink)
                if sink.size == 0:
                    sink.add(b"")  # an empty export is still a valid gzip file
    except psycopg.Error as e:
        raise DatabaseError(f"export of readings failed: {str(e).strip()}") from e
    return ExportResult(
        archive=name,
        records=records,
        size=sink.size,
        sha256=sink.hexdigest(),
        period_end=iso(snapshot.taken_at),
        cursor=encode_cursor(snapshot.mark),
        snapshot=snapshot.mark.text(),
        reset=reset,
    )


def _checked_against(request: ExportRequest, now: SnapshotMark) -> tuple[ExportRequest, bool]:
    """A cursor from beyond this database's present (snapshots only move forward) cannot
    come from it: the database was re-created or the cursor is another site's. Skipping
    what it claims was seen would lose rows, so the export starts over with every row."""
    if request.after is None or request.after.xmax <= now.xmax:
        return request, False
    log.warning(
        "cursor snapshot %s is ahead of this database's %s (re-created database or another "
        "site's cursor); exporting every row",
        request.after.text(),
        now.text(),
    )
    return ExportRequest(), True
