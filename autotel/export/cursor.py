"""The export request: `since`, the opaque cursor, and the rows they select.

Exactly once rests on transactions, not on times or serial ids (both are taken
before commit, so a row can commit behind a `max()` cursor): every row carries the
id of the transaction that inserted it (`txid`). Each export reads one REPEATABLE
READ snapshot and hands the admin that snapshot as the cursor. The next export
takes exactly the rows its own snapshot sees and the previous one did not
(`NOT pg_visible_in_snapshot(txid, previous)`): a committed transaction becomes
visible in one snapshot and stays visible in every later one, so each row is
exported once. Unlike a bare `xmin` boundary, a transaction left open for an hour
does not hold back the rows that committed around it.

A snapshot means something only in the database that took it: a re-created
database (new disk, reinstall, wiped embedded folder, restore from a dump) or one
restored from an older physical backup hands out transaction ids the old cursor
claims to have seen, and their rows would be skipped until the counter passed the
cursor. So a cursor (`v3.`, base64url of `<system_identifier>/<epoch>/<witness>/<snapshot>`)
names the cluster that issued it (`pg_control_system()`), the site's export epoch,
which `autotel.export.mark` moves on when the database went back in time, and the
count of the database's export witness when it was handed out: a site whose database
and state folder went back together (a restored disk image) no longer remembers the
cursors it handed out, but the admin's cursor still says how far the witness had
counted. A cursor that does not fit is answered with every row
(`autotel.export.writer`). `v2.` cursors (without the count: from a site whose
witness could not be written, or issued before) and `v1.` ones (the snapshot alone)
are still accepted.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import re
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from autotel.timeutil import iso, parse_iso

CURSOR_VERSION = 3
MAX_CURSOR_CHARS = 65_536
MAX_XID = 2**63 - 1
_CURSOR_PATTERN = re.compile(r"v(\d{1,3})\.([A-Za-z0-9_-]+)")
_ORIGIN_PATTERN = re.compile(r"(-?\d{1,20})/(\d{1,19})/(.*)", re.DOTALL)
_WITNESSED_PATTERN = re.compile(r"(-?\d{1,20})/(\d{1,19})/(\d{1,19})/(.*)", re.DOTALL)
_SNAPSHOT_PATTERN = re.compile(r"(\d{1,19}):(\d{1,19}):((?:\d{1,19})(?:,\d{1,19})*)?")


class BadExportRequest(ValueError):
    """A malformed `since` or `cursor`; the agent answers 400 with this message."""


@dataclass(frozen=True)
class SnapshotMark:
    """A PostgreSQL snapshot (`pg_snapshot`): which transactions it saw as committed.

    A transaction id is visible when it is below `xmin`, or below `xmax` and not
    in `xip` (the ones still running when the snapshot was taken).
    """

    xmin: int
    xmax: int
    xip: tuple[int, ...] = ()

    @classmethod
    def parse(cls, text: str) -> SnapshotMark:
        """`xmin:xmax:xip,...` as PostgreSQL writes it.

        Raises: BadExportRequest for any other text or an inconsistent snapshot.
        """
        match = _SNAPSHOT_PATTERN.fullmatch(text)
        if match is None:
            raise BadExportRequest("cursor: damaged (no valid snapshot inside)")
        xmin, xmax = int(match.group(1)), int(match.group(2))
        xip = tuple(int(x) for x in match.group(3).split(",")) if match.group(3) else ()
        in_order = all(a < b for a, b in itertools.pairwise(xip))
        if not (xmin <= xmax <= MAX_XID and in_order and all(xmin <= x < xmax for x in xip)):
            raise BadExportRequest("cursor: damaged (inconsistent snapshot inside)")
        return cls(xmin, xmax, xip)

    def text(self) -> str:
        return f"{self.xmin}:{self.xmax}:{','.join(map(str, self.xip))}"

    def sees(self, txid: int) -> bool:
        """What `pg_visible_in_snapshot(txid, snapshot)` answers (for tests and checks)."""
        return txid < self.xmin or (txid < self.xmax and txid not in self.xip)


@dataclass(frozen=True)
class CursorOrigin:
    """Where a cursor came from: the cluster (`system_identifier`, as text: PostgreSQL
    shows it as a signed bigint), the site's export epoch in that cluster and the count
    of the database's export witness once it was handed out (None: not counted)."""

    system: str
    epoch: int
    witness: int | None = None

    def text(self) -> str:
        return f"{self.system}/{self.epoch}"


def encode_cursor(snapshot: SnapshotMark, origin: CursorOrigin | None = None) -> str:
    """A v3 cursor; v2 for an origin without a witness count, v1 without an origin (what
    older agents issued, kept for tests)."""
    if origin is None:
        version, text = 1, snapshot.text()
    elif origin.witness is None:
        version, text = 2, f"{origin.text()}/{snapshot.text()}"
    else:
        version, text = CURSOR_VERSION, f"{origin.text()}/{origin.witness}/{snapshot.text()}"
    return f"v{version}." + base64.urlsafe_b64encode(text.encode("ascii")).decode("ascii").rstrip("=")


def decode_cursor(text: str) -> SnapshotMark:
    """The snapshot inside a cursor (see `parse_cursor`)."""
    return parse_cursor(text)[0]


def parse_cursor(text: str) -> tuple[SnapshotMark, CursorOrigin | None]:
    """The snapshot inside a cursor and, for v2, where it came from (None for v1).

    Raises:
        BadExportRequest: not a cursor this agent issued (form, version or value).
    """
    match = _CURSOR_PATTERN.fullmatch(text.strip()) if len(text) <= MAX_CURSOR_CHARS else None
    if match is None:
        raise BadExportRequest("cursor: not a cursor from this agent (expected the X-Cursor value)")
    version, body = int(match.group(1)), match.group(2)
    try:
        payload = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode("ascii")
    except (binascii.Error, ValueError):
        raise BadExportRequest("cursor: damaged (not the X-Cursor value as sent)") from None
    if version == 1:
        return SnapshotMark.parse(payload), None
    if version not in (2, CURSOR_VERSION):
        raise BadExportRequest(
            f"cursor: version {version} is not supported "
            f"(this agent issues version {CURSOR_VERSION} and accepts 1 and 2)"
        )
    if version == 2:
        origin = _ORIGIN_PATTERN.fullmatch(payload)
        if origin is None:
            raise BadExportRequest("cursor: damaged (no database identity inside)")
        return SnapshotMark.parse(origin.group(3)), CursorOrigin(origin.group(1),
                                                                 int(origin.group(2)))
    witnessed = _WITNESSED_PATTERN.fullmatch(payload)
    if witnessed is None:
        raise BadExportRequest("cursor: damaged (no database identity inside)")
    system, epoch, witness, snapshot = witnessed.groups()
    return SnapshotMark.parse(snapshot), CursorOrigin(system, int(epoch), int(witness))


@dataclass(frozen=True)
class ExportRequest:
    """What to export: rows after `since` (by time), rows new since `after` (a cursor), or all.

    `origin` is where the cursor came from (None for a v1 cursor)."""

    since: datetime | None = None
    after: SnapshotMark | None = None
    origin: CursorOrigin | None = None

    @classmethod
    def from_query(cls, since: str | None, cursor: str | None) -> ExportRequest:
        """Raises: BadExportRequest for a malformed value, or both given at once."""
        if since and cursor:
            raise BadExportRequest("pass either since or cursor, not both")
        if cursor:
            after, origin = parse_cursor(cursor)
            return cls(after=after, origin=origin)
        if since:
            return cls(since=parse_since(since))
        return cls()

    def to_params(self) -> dict[str, Any]:
        params: dict[str, Any] = {
            "since": iso(self.since) if self.since else None,
            "after": self.after.text() if self.after else None,
            "origin": self.origin.text() if self.origin else None,
        }
        if self.origin is not None and self.origin.witness is not None:
            params["witness"] = self.origin.witness
        return params

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> ExportRequest:
        """The request back from a job file (written by the agent or a person).

        Raises: BadExportRequest for values of the wrong type or form.
        """
        since, after, origin = params.get("since"), params.get("after"), params.get("origin")
        witness = params.get("witness")
        if witness is not None and (not isinstance(witness, int) or isinstance(witness, bool)
                                    or witness < 0):
            raise BadExportRequest(f"witness: expected a count, found {witness!r}")
        if since is not None and not isinstance(since, str):
            raise BadExportRequest(f"since: expected an ISO 8601 string, found {since!r}")
        if after is not None and not isinstance(after, str):
            raise BadExportRequest(f"after: expected a snapshot xmin:xmax:xip, found {after!r}")
        if since and after:
            raise BadExportRequest("pass either since or after, not both")
        return cls(
            since=parse_since(since) if since else None,
            after=SnapshotMark.parse(after) if after else None,
            origin=replace(parse_origin(origin), witness=witness) if origin and after else None,
        )


def parse_origin(text: object) -> CursorOrigin:
    """`<system_identifier>/<epoch>` from a job file.

    Raises: BadExportRequest for anything else.
    """
    match = _ORIGIN_PATTERN.fullmatch(f"{text}/") if isinstance(text, str) else None
    if match is None or match.group(3):
        raise BadExportRequest(f"origin: expected <system_identifier>/<epoch>, found {text!r}")
    return CursorOrigin(match.group(1), int(match.group(2)))


def parse_since(text: str) -> datetime:
    """`since` as a UTC time.

    Converted here, not where it is used: a time at the very edge of the calendar
    (`0001-01-01T00:00:00+14:00`) is valid ISO 8601 but has no UTC equivalent.

    Raises: BadExportRequest for anything else than an ISO 8601 time within years 1-9999 UTC.
    """
    if len(text) > 64:
        raise BadExportRequest("since: too long for an ISO 8601 time")
    try:
        moment = parse_iso(text)
    except ValueError:
        raise BadExportRequest(
            f"since: {text!r} is not an ISO 8601 time (e.g. 2026-02-20T00:00:00Z)"
        ) from None
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise BadExportRequest(
            f"since: {text!r} lies outside the years 1-9999 once converted to UTC"
        ) from None
