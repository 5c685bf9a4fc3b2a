"""The site's own export mark: which database its cursors came from, and how far they went.

A cursor is a snapshot of one database at one moment (`autotel.export.cursor`). Two
things make an old cursor skip new rows silently, and the transaction counter alone
cannot tell either: the database was re-created (another cluster: new
`system_identifier`), or it was restored from an older physical backup (same
cluster, its transaction counter set back, so new rows get ids the cursor claims to
have seen). So the site keeps, outside the database, in `state/export_mark.json`:

- `system`: the cluster's `system_identifier` at the last check;
- `epoch`: moved on each time the database went back in time; cursors carry it;
- `xmax`: the highest snapshot xmax of any cursor handed out (recorded before the
  answer goes out), which a restored cluster's counter is below;
- `witness`: how many cursors the database's own export witness had counted when the
  last one went out (`autotel.export.witness`; 0 in a mark written before it);
- `v1`: whether cursors without identity (v1, from before) may still be trusted:
  only while nothing has happened since the mark was first made.

A restored counter passes `xmax` again after enough transactions (a collector
inserting for a day before the next check), and then looks like nothing happened.
The witness cannot: it is a row in the database, so a restore takes it back to what
it counted when the backup was made, whatever runs afterwards, while the mark keeps
the higher count. Before a cursor goes out (`record_handed_out`) the witness is
advanced and committed FIRST, then the mark records the same count: a crash in
between leaves the database ahead of the mark, which means nothing (a restore to
before that point still shows a count below the mark's; a restore to after it
lost no cursor's rows, since every cursor's snapshot was taken before its count
was committed). A database whose witness is below the mark's (a missing table
counts 0) went back in time: the epoch moves on, as for a counter gone back.

`check_database` compares the database with the mark before each export and when the
agent starts; `cursor_misfit` then says whether a request's cursor still fits. The
decisions (`reconcile`, `cursor_misfit`) are pure; `MarkStore` is the file and its
lock (runner and agent both check, in different processes); the witness is read
and advanced while that lock is held, so the two counts are compared as a pair.

A restore that takes the state directory back together with the database (a
whole-PC image) takes the mark back too. The admins' cursors then know more than the
site: each carries the witness's count when it went out (v3), and one from this
cluster and epoch whose count the database has not reached shows the database went
back (`_went_back_with_its_state`): the epoch moves on as for any restore, so every
cursor of the lost time misfits, not only the one that told.

Left to others: cursors handed out unwitnessed (before the site's upgrade to the
witness, or by a role that may not write it: see `autotel.export.witness`) are
protected by the `xmax` check alone, as before.
"""
from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import psycopg

from autotel.config import Config
from autotel.errors import AutotelError
from autotel.export.cursor import CursorOrigin, ExportRequest
from autotel.export.witness import Witness, unwitnessed_warning
from autotel.fsutil import atomic_write_json
from autotel.lockfile import ProcessLock

MARK_FILE = "export_mark.json"
LOCK_WAIT_S = 30.0
STATE_QUERY = (
    "SELECT (SELECT system_identifier FROM pg_control_system())::text,"
    " pg_snapshot_xmax(pg_current_snapshot())::text"
)

log = logging.getLogger("autotel.export")


@dataclass(frozen=True)
class ExportMark:
    system: str
    epoch: int
    xmax: int
    v1: bool = False
    witness: int = 0

    @property
    def origin(self) -> CursorOrigin:
        return CursorOrigin(self.system, self.epoch)

    @classmethod
    def from_json(cls, data: Any) -> ExportMark:
        """Raises: ValueError when `data` is not a mark."""
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")  # noqa: TRY004 - damage, reported as such
        system, epoch, xmax, v1 = (data.get(k) for k in ("system", "epoch", "xmax", "v1"))
        witness = data.get("witness", 0)  # absent from marks written before the witness
        if not (isinstance(system, str) and system.lstrip("-").isdigit()):
            raise ValueError(f"system: expected a system identifier, found {system!r}")
        for name, value in (("epoch", epoch), ("xmax", xmax), ("witness", witness)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{name}: expected a count, found {value!r}")
        return cls(
            system, int(epoch), int(xmax), v1 is True, int(witness)  # type: ignore[arg-type]
        )


@dataclass(frozen=True)
class DatabaseState:
    """The cluster's identity, its transaction counter (`pg_current_snapshot()` xmax) and
    its export witness's count (None: not known, e.g. the role may not read it)."""

    system: str
    xmax: int
    witness: int | None = None


@dataclass(frozen=True)
class Reconciled:
    mark: ExportMark
    problem: str = ""  # what happened to the database, for the error log; "" if nothing


def reconcile(mark: ExportMark | None, db: DatabaseState, fresh_epoch: int,
              claimed: CursorOrigin | None = None) -> Reconciled:
    """The mark that fits `db` now, and what happened if it had to change.

    `fresh_epoch` starts a mark made from nothing (a first start, or one rebuilt after
    damage): it must differ from every epoch a cursor may carry, so the caller passes
    the time in nanoseconds: larger than any epoch counted up from an older one, and
    unlike seconds never the same for a mark rebuilt moments after it was made.

    A witness ahead of the mark (a crash after the database counted a cursor and before
    the file did) is left as it is: raising the mark to it would only make a later
    restore to just before that point look like a loss when none happened.
    """
    known = db.witness if db.witness is not None else 0
    if mark is None:
        return Reconciled(ExportMark(db.system, fresh_epoch, db.xmax, witness=known))
    if mark.system != db.system:
        return Reconciled(
            ExportMark(db.system, mark.epoch + 1, db.xmax, witness=known),
            f"the site database is another PostgreSQL cluster than at the last export "
            f"(system identifier {db.system}, was {mark.system}): it was re-created, "
            "reinstalled or restored from a dump",
        )
    problem = _went_back(mark, db) or _went_back_with_its_state(mark, db, claimed)
    if problem:
        witness = db.witness if db.witness is not None else mark.witness
        moved = ExportMark(db.system, mark.epoch + 1, db.xmax, witness=witness)
        return Reconciled(moved, problem)
    return Reconciled(mark)


def _went_back(mark: ExportMark, db: DatabaseState) -> str:
    """What shows that the same cluster went back in time since `mark`, or ""."""
    if db.xmax < mark.xmax:
        return (
            f"the site database went back in time: its transaction counter ({db.xmax}) is "
            f"below the highest export cursor handed out ({mark.xmax}) on the same cluster, "
            "so it was restored from an older backup; readings recorded between that backup "
            "and the restore are only in the admins' archives now"
        )
    if db.witness is not None and db.witness < mark.witness:
        return (
            f"the site database went back in time: its export witness has counted {db.witness} "
            f"cursor(s) handed out, this site's export mark {mark.witness}, so it was restored "
            "from an older backup (or database.dsn now names another database) after the last "
            "export, and its transaction counter may have passed the admins' cursors since; "
            "readings recorded between that backup and the restore are only in the admins' "
            "archives now"
        )
    return ""


def _went_back_with_its_state(mark: ExportMark, db: DatabaseState,
                              claimed: CursorOrigin | None) -> str:
    """What shows that the database went back in time together with this site's state
    folder (a restored disk image: the mark forgot the cursors it saw go out), or "".

    Only a cursor of this cluster and epoch can tell: it says how far the witness had
    counted when it went out, and a database that counts less now was restored since.
    """
    if claimed is None or claimed.witness is None or db.witness is None:
        return ""
    if (claimed.system, claimed.epoch) != (mark.system, mark.epoch) or \
            db.witness >= claimed.witness:
        return ""
    return (
        f"the site database went back in time together with this site's state folder (a "
        f"restored disk image?): an admin's cursor went out when its export witness had "
        f"counted {claimed.witness} cursor(s), it has counted {db.witness}; readings "
        "recorded between that image and the restore are only in the admins' archives now"
    )


def cursor_misfit(request: ExportRequest, mark: ExportMark | None, db: DatabaseState) -> str:
    """Why `request`'s cursor cannot be trusted in `db` (a short reason), or "".

    Trusting a cursor that did not come from this database as it is now would skip
    rows, so each doubt counts: another cluster, an older epoch, a v1 cursor after the
    database changed, or a snapshot beyond the database's present.
    """
    if request.after is None:
        return ""
    origin = request.origin
    if origin is not None and origin.system != db.system:
        return f"another database: system id {db.system}, the cursor's {origin.system}"
    if origin is not None and mark is not None and origin.epoch != mark.epoch:
        return f"database restored or export state rebuilt: epoch {mark.epoch}, the cursor's {origin.epoch}"
    if origin is None and mark is not None and not mark.v1:
        return "database changed since this cursor without identity (v1) was issued"
    if request.after.xmax > db.xmax:
        return (
            f"transaction counter behind the cursor: xmax {db.xmax}, the cursor's {request.after.xmax}"
        )
    return ""


class MarkStore:
    """`state/export_mark.json` and the lock that serialises its read-modify-writes."""

    def __init__(self, state_root: Path) -> None:
        self.path = Path(state_root) / MARK_FILE
        self.lock_path = Path(state_root) / "run" / "export_mark.lock"

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        lock = ProcessLock(self.lock_path, "export mark")
        lock.acquire_waiting(LOCK_WAIT_S)
        try:
            yield
        finally:
            lock.release()

    def load(self) -> tuple[ExportMark | None, str]:
        """(the mark or None, what is wrong with the file or ""); a missing file is no damage."""
        try:
            return ExportMark.from_json(json.loads(self.path.read_text(encoding="utf-8"))), ""
        except FileNotFoundError:
            return None, ""
        except (OSError, ValueError) as e:  # UnicodeDecodeError and JSONDecodeError included
            return None, f"{type(e).__name__}: {e}"

    def save(self, mark: ExportMark) -> None:
        atomic_write_json(self.path, asdict(mark))


def check_database(
    store: MarkStore, db: DatabaseState | Callable[[], DatabaseState],
    witness: Witness | None = None, claimed: CursorOrigin | None = None,
) -> ExportMark:
    """The one check: compare `db` with the site's mark, move the mark on if the database
    changed (with an error-level log line saying what happened), and return it.

    `witness` is read here, under the mark's lock, so a cursor handed out meanwhile
    cannot make the database's count look older than the mark's; without it (or when
    the role may not read it) only `db.witness` counts, if given. `claimed` is where the
    request's cursor says it came from, which may show what the mark forgot.

    `db` is the state an export's snapshot saw, or a function that reads the database's
    state now: called under the lock, so a cursor handed out meanwhile cannot raise the
    mark above a counter read before it (which would look like a restore).

    Raises:
        OSError: the mark cannot be written (the export must not hand out a cursor then).
        StateError: the mark's lock stayed held for `LOCK_WAIT_S`.
        psycopg.Error: the witness could not be read (e.g. a lost connection).
    """
    with store.locked():
        if callable(db):
            db = db()
        if witness is not None:
            db = replace(db, witness=witness.read())
        mark, damage = store.load()
        if damage:
            log.error(
                "%s is damaged (%s); rebuilt it: each admin's next push gets every reading "
                "again, since this site can no longer tell whether its database was restored",
                store.path,
                damage,
            )
        first = mark is None and not damage
        result = reconcile(mark, db, fresh_epoch=time.time_ns(), claimed=claimed)
        if result.problem:
            log.error(
                "%s; started export epoch %d: each admin's next push gets every reading "
                "again (some repeat earlier archives)",
                result.problem,
                result.mark.epoch,
            )
        updated = replace(result.mark, v1=first or (result.mark.v1 and not result.problem))
        if updated != mark:
            store.save(updated)
    return updated


def record_handed_out(
    store: MarkStore, db: DatabaseState, witness: Witness | None = None
) -> int | None:
    """Record a cursor about to be handed out (before the answer goes out): advance the
    database's witness and commit it, THEN raise the mark's xmax and witness count.

    In this order a crash between the two leaves the database ahead of the mark, which
    is harmless (see the module docstring); the reverse would let a mark count a cursor
    the database never witnessed, and every later check would see a restore.

    Returns the witness's count for the cursor to carry (None: not counted).

    Raises:
        OSError or StateError as `check_database`; psycopg.Error when the witness could
        not be advanced for another reason than a missing table or privilege.
    """
    with store.locked():
        mark, _ = store.load()
        if mark is None or mark.system != db.system:
            return None  # the next check rebuilds or moves the mark; this cursor will not fit
        counted = witness.advance() if witness is not None else None
        updated = replace(
            mark, xmax=max(mark.xmax, db.xmax), witness=max(mark.witness, counted or 0)
        )
        if updated != mark:
            store.save(updated)
    return counted


def read_state(conn: psycopg.Connection[Any]) -> DatabaseState:
    row = conn.execute(STATE_QUERY).fetchone()
    assert row is not None
    return DatabaseState(str(row[0]), int(row[1]))


def check_at_start(config: Config) -> None:
    """The agent's check when it starts, so a restored database is noticed at once, and
    a warning when this site's exports cannot be witnessed. Never raises: the agent
    serves whatever happens here.

    An embedded server that is not running is left alone (the watchdog starts it before
    the services; the first export checks anyway): starting it here would leave a
    server no one stops behind a bare `autotel agent`.
    """
    from autotel.db import connect
    from autotel.db.connection import configured_dsn
    from autotel.db.embedded import ServerState, classify, read_postmaster

    if not configured_dsn(config):
        info = read_postmaster(config.state.pgdata)
        if info is None or classify(info) is not ServerState.READY:
            log.info("export mark not checked at start: the embedded database is not running")
            return
    try:
        with connect(config, autocommit=True) as conn:
            witness = Witness(conn)
            check_database(MarkStore(config.state.root), lambda: read_state(conn), witness)
            problem = witness.problem()
        if problem:
            log.warning("%s", unwitnessed_warning(problem))
    except (AutotelError, psycopg.Error, OSError) as e:
        log.warning("could not compare the database with the export mark at start: %s", e)
