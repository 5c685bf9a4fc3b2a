"""The export witness: a count inside the site database that goes back in time with it.

The site's export mark (`autotel.export.mark`, a file) keeps the highest snapshot of
any cursor handed out; a database restored from an older physical backup has its
transaction counter set back below it, until enough transactions ran to pass it
again. From then on the counter alone cannot tell, and every row written after the
restore whose id the admin's cursor claims to have seen would count as exported.
So the database also counts the cursors handed out, in the one-row table
`export_witness` (`migrations/0002_export_witness.sql`): a restore takes that count
back with it whatever runs afterwards, while the mark keeps the count it recorded.

- `read`: the count; 0 when the table or its row is missing (not migrated yet, or
  restored from a backup older than the migration: it witnessed nothing there); None
  when the role may not read it, and the check then relies on the counter alone.
- `advance`: add one and commit, before the mark records the new count and before
  the cursor goes out. None, with a warning, when the table is missing or the role or
  server accepts no write: the site still exports (refusing would stop every push of
  a site that worked before the upgrade, over a hole it always had), protected by
  the counter check alone. Any other error (the connection lost) propagates, and
  then no cursor goes out.

The connection is a separate one in autocommit, never the export's: that transaction
is read-only, and its snapshot is the cursor handed out; the witness's own
transaction id comes after that snapshot, so it changes nothing the cursor saw.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from psycopg import errors

TABLE = "export_witness"
_ACCESS = (
    "SELECT to_regclass(%(t)s) IS NOT NULL,"
    " coalesce(has_table_privilege(to_regclass(%(t)s), 'SELECT'), false),"
    " coalesce(has_table_privilege(to_regclass(%(t)s), 'INSERT')"
    " AND has_table_privilege(to_regclass(%(t)s), 'UPDATE'), false),"
    " current_setting('transaction_read_only') = 'on'"
)
_READ = "SELECT coalesce(max(handed_out), 0) FROM export_witness"
# The count must be on disk before the mark file records it: with synchronous_commit
# off, a server crash could lose it and look like a restore (a needless full export).
_DURABLE = (
    "SELECT set_config('synchronous_commit', 'local', true)"
    " WHERE current_setting('synchronous_commit') = 'off'"
)
_ADVANCE = (
    "INSERT INTO export_witness AS w (single, handed_out, handed_out_at) VALUES (true, 1, now())"
    " ON CONFLICT (single) DO UPDATE SET handed_out = w.handed_out + 1, handed_out_at = now()"
    " RETURNING handed_out"
)
# What the site can do without the witness, and what each cause needs from a person.
_UNWITNESSED = (
    "a restore of the site database from an older backup is then noticed only while its "
    "transaction counter is behind the admins' cursors"
)
_MISSING_FIX = (
    "run `autotel db migrate` (the watchdog does it when it starts, for the embedded database)"
)

# A database where the witness cannot be written: the export goes on without it.
_CANNOT_WRITE = (errors.UndefinedTable, errors.InsufficientPrivilege, errors.ReadOnlySqlTransaction)

log = logging.getLogger("autotel.export")


class Witness:
    """The export witness of one site database, over `conn` (autocommit, not the export's)."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn

    def read(self) -> int | None:
        """The count of cursors handed out; 0 without the table, None if it may not be read."""
        try:
            row = self.conn.execute(_READ).fetchone()
        except errors.UndefinedTable:
            return 0
        except errors.InsufficientPrivilege:
            return None
        assert row is not None
        return int(row[0])

    def advance(self) -> int | None:
        """Count one more cursor handed out (committed, durable); the new count, or None
        with a warning when this database cannot be written (see the module docstring).

        Raises:
            psycopg.Error: anything else, e.g. a lost connection.
        """
        try:
            with self.conn.transaction():
                self.conn.execute(_DURABLE)
                row = self.conn.execute(_ADVANCE).fetchone()
        except _CANNOT_WRITE as e:
            log.warning(
                "export witness not advanced (%s): this cursor goes out unwitnessed; %s; %s",
                " ".join(str(e).split()),
                _UNWITNESSED,
                _fix_for(e),
            )
            return None
        assert row is not None
        return int(row[0])

    def problem(self) -> str:
        """Why `advance` will not work here, or "": for the warning when the agent starts."""
        row = self.conn.execute(_ACCESS, {"t": TABLE}).fetchone()
        assert row is not None
        exists, readable, writable, read_only = (bool(v) for v in row)
        if not exists:
            return f"the table {TABLE} is missing; {_MISSING_FIX}"
        if read_only:
            return f"the database accepts no writes from this role; {_grant_fix()}"
        if not (readable and writable):
            return f"the role in database.dsn may not read and write {TABLE}; {_grant_fix()}"
        return ""


def unwitnessed_warning(problem: str) -> str:
    """The warning the agent logs at start for `problem` (from `Witness.problem`)."""
    return f"exports will go out unwitnessed: {problem}; {_UNWITNESSED}"


def _fix_for(error: psycopg.Error) -> str:
    return _MISSING_FIX if isinstance(error, errors.UndefinedTable) else _grant_fix()


def _grant_fix() -> str:
    return f"grant that role SELECT, INSERT, UPDATE ON {TABLE} and let it write"
