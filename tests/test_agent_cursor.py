"""Export requests and cursors: pure parsing, versioning and rejection of malformed input."""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from autotel.errors import StateError
from autotel.export.archive import FRESH_S, archive_name, prune
from autotel.export.cursor import (
    BadExportRequest,
    CursorOrigin,
    ExportRequest,
    SnapshotMark,
    decode_cursor,
    encode_cursor,
    parse_cursor,
)
from autotel.export.mark import (
    DatabaseState,
    ExportMark,
    MarkStore,
    check_database,
    cursor_misfit,
    reconcile,
)
from autotel.lockfile import ProcessLock


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "snapshot",
    [
        SnapshotMark(0, 0),
        SnapshotMark(735, 735),
        SnapshotMark(700, 800, (700, 750, 799)),
        SnapshotMark(2**40, 2**40 + 5, (2**40 + 1,)),
        SnapshotMark(2**63 - 1, 2**63 - 1),
    ],
)
def test_cursor_round_trips(snapshot: SnapshotMark) -> None:
    cursor = encode_cursor(snapshot)
    assert cursor.startswith("v1.")
    assert decode_cursor(cursor) == snapshot
    assert SnapshotMark.parse(snapshot.text()) == snapshot


def test_visibility_matches_postgres_rules() -> None:
    mark = SnapshotMark(100, 110, (100, 105))
    assert [t for t in range(95, 115) if mark.sees(t)] == [
        95,
        96,
        97,
        98,
        99,
        101,
        102,
        103,
        104,
        106,
        107,
        108,
        109,
    ]


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "garbage",
        "v1.",
        "v1.!!!",
        "v2." + _b64("1:1:"),
        "v1." + _b64("1:2"),
        "v1." + _b64("5:4:"),
        "v1." + _b64("1:9:9"),
        "v1." + _b64("1:9:0"),
        "v1." + _b64("1:9:5,3"),
        "v1." + _b64("1:9:3,3"),
        "v1." + _b64("-1:9:"),
        "v1." + _b64("1:9: 3"),
        "v1." + _b64(f"1:{2**64}:"),
        "v1." + "A" * 70_000,
        "v1.bnVsbA",
        "v1." + _b64("1:2:\n"),
    ],
)
def test_malformed_cursors_are_refused(bad: str) -> None:
    with pytest.raises(BadExportRequest):
        decode_cursor(bad)


def test_request_from_query() -> None:
    assert ExportRequest.from_query(None, None) == ExportRequest()
    since = ExportRequest.from_query("2026-02-20T00:00:00Z", None)
    assert since.since == datetime(2026, 2, 20, tzinfo=UTC)
    cursor = encode_cursor(SnapshotMark(42, 44, (43,)))
    assert ExportRequest.from_query(None, cursor).after == SnapshotMark(42, 44, (43,))
    for since_text, given in [
        ("yesterday", None),
        ("2026-02-20T00:00:00Z", cursor),
        ("9" * 100, None),
    ]:
        with pytest.raises(BadExportRequest):
            ExportRequest.from_query(since_text, given)


def test_request_survives_the_job_file() -> None:
    for request in [
        ExportRequest(),
        ExportRequest(after=SnapshotMark(7, 9, (8,))),
        ExportRequest(since=datetime(2026, 1, 1, 10, tzinfo=UTC)),
    ]:
        assert ExportRequest.from_params(request.to_params()) == request
    bad: list[dict[str, Any]] = [
        {"after": 7},
        {"after": "7"},
        {"since": 5},
        {"after": True},
        {"since": "2026-01-01", "after": "3:3:"},
    ]
    for params in bad:
        with pytest.raises(BadExportRequest):
            ExportRequest.from_params(params)


def test_prune_keeps_the_served_and_newer_archives(tmp_path: Path) -> None:
    names = [archive_name(f"20260101T00000{i}000000Z", i) for i in range(5)]
    for name in names:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / ".tmpfile.jsonl.gz.tmp").write_bytes(b"x")
    later = time.time() + FRESH_S + 1  # a fake clock: the archives are settled by then
    removed = prune(tmp_path, {names[3], names[1]}, now=later)
    assert sorted(removed) == [names[0]]  # names[2]: the newest of the rest (see below)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [names[1], names[2], names[3], names[4], ".tmpfile.jsonl.gz.tmp"]
    )


def test_prune_spares_an_archive_just_written_for_another_answer(tmp_path: Path) -> None:
    """Another request's export may have just finished, its answer not yet opened it."""
    names = [archive_name(f"20260101T00000{i}000000Z", i) for i in range(3)]
    for name in names:
        (tmp_path / name).write_bytes(b"x")
    assert prune(tmp_path, {names[2]}) == []
    assert prune(tmp_path, {names[2]}, now=time.time() + FRESH_S + 1) == names[:1]


def test_prune_spares_the_newest_other_archive(tmp_path: Path) -> None:
    """It may be a download that broke, which its admin resumes while another admin's
    pushes go on: the agent cannot tell whether its last bytes arrived."""
    names = [archive_name(f"20260101T00000{i}000000Z", i) for i in range(4)]
    for name in names:
        (tmp_path / name).write_bytes(b"x")
    assert prune(tmp_path, {names[3]}, now=time.time() + FRESH_S + 1) == names[:2]


def test_v2_cursor_round_trips_with_its_origin() -> None:
    origin = CursorOrigin("-7713714469134170648", 3)
    cursor = encode_cursor(SnapshotMark(700, 800, (750,)), origin)
    assert cursor.startswith("v2.")
    assert parse_cursor(cursor) == (SnapshotMark(700, 800, (750,)), origin)
    assert parse_cursor(encode_cursor(SnapshotMark(5, 5))) == (SnapshotMark(5, 5), None)
    request = ExportRequest.from_query(None, cursor)
    assert ExportRequest.from_params(request.to_params()) == request
    for bad in ["v2." + _b64("1/2"), "v2." + _b64("x/1/5:5:"), "v2." + _b64("1//5:5:"),
                "v3." + _b64("1/2/5:5:"), "v3." + _b64("1/2/-3/5:5:"), "v4." + _b64("1/2/3/5:5:")]:
        with pytest.raises(BadExportRequest):
            parse_cursor(bad)
    with pytest.raises(BadExportRequest):
        ExportRequest.from_params({"after": "5:5:", "origin": "1/2/3"})


def test_v3_cursor_carries_the_witness_count() -> None:
    origin = CursorOrigin("-7713714469134170648", 3, witness=12)
    cursor = encode_cursor(SnapshotMark(700, 800, (750,)), origin)
    assert cursor.startswith("v3.")
    assert parse_cursor(cursor) == (SnapshotMark(700, 800, (750,)), origin)
    request = ExportRequest.from_query(None, cursor)
    assert ExportRequest.from_params(request.to_params()) == request
    with pytest.raises(BadExportRequest, match="witness"):
        ExportRequest.from_params({**request.to_params(), "witness": "12"})


DB = DatabaseState("42", 900)
MARK = ExportMark("42", 7, 850)


@pytest.mark.parametrize(
    ("claimed", "witness", "moved"),
    [
        (CursorOrigin("42", 7, witness=5), 4, True),  # the image is older than the cursor
        (CursorOrigin("42", 7, witness=5), 5, False),
        (CursorOrigin("42", 7, witness=5), None, False),  # the count cannot be read
        (CursorOrigin("42", 7), 4, False),  # a cursor without a count (v2)
        (CursorOrigin("42", 6, witness=9), 4, False),  # another epoch: misfits anyway
    ],
)
def test_a_cursor_counted_further_than_the_database_moves_the_epoch(
    claimed: CursorOrigin, witness: int | None, moved: bool
) -> None:
    result = reconcile(ExportMark("42", 7, 850, witness=4), DatabaseState("42", 900, witness),
                       fresh_epoch=1000, claimed=claimed)
    assert (result.mark.epoch == 8) is moved
    assert ("together with this site's state folder" in result.problem) is moved


@pytest.mark.parametrize(
    ("mark", "db", "expected", "problem"),
    [
        (None, DB, ExportMark("42", 1000, 900), ""),
        (MARK, DB, MARK, ""),
        (MARK, DatabaseState("42", 850), MARK, ""),
        (MARK, DatabaseState("42", 849), ExportMark("42", 8, 849), "went back in time"),
        (MARK, DatabaseState("43", 2000), ExportMark("43", 8, 2000), "another PostgreSQL"),
    ],
)
def test_reconcile(mark: ExportMark | None, db: DatabaseState, expected: ExportMark,
                   problem: str) -> None:
    result = reconcile(mark, db, fresh_epoch=1000)
    assert result.mark == expected
    assert problem in result.problem and bool(problem) == bool(result.problem)


@pytest.mark.parametrize(
    ("after", "origin", "mark", "reason"),
    [
        (None, None, MARK, ""),
        (SnapshotMark(800, 850), CursorOrigin("42", 7), MARK, ""),
        (SnapshotMark(800, 850), CursorOrigin("41", 7), MARK, "another database"),
        (SnapshotMark(800, 850), CursorOrigin("42", 6), MARK, "epoch 7, the cursor's 6"),
        (SnapshotMark(800, 950), CursorOrigin("42", 7), MARK, "counter behind"),
        (SnapshotMark(800, 850), None, ExportMark("42", 7, 850, v1=True), ""),
        (SnapshotMark(800, 950), None, ExportMark("42", 7, 850, v1=True), "counter behind"),
        (SnapshotMark(800, 850), None, MARK, "without identity"),
        (SnapshotMark(800, 850), CursorOrigin("42", 9), None, ""),
    ],
)
def test_cursor_misfit(after: SnapshotMark | None, origin: CursorOrigin | None,
                       mark: ExportMark | None, reason: str) -> None:
    found = cursor_misfit(ExportRequest(after=after, origin=origin), mark, DB)
    assert reason in found and bool(reason) == bool(found)
    assert found.isascii()  # it goes out as a header


def test_a_mark_rebuilt_moments_after_it_was_made_starts_another_epoch(tmp_path: Path) -> None:
    """A cursor handed out under the damaged mark must not fit the rebuilt one, however
    soon after the damage the next export comes (in the same second, say)."""
    store, db = MarkStore(tmp_path), DatabaseState("7", 100)
    first = check_database(store, db)
    store.path.write_bytes(b"{")
    assert check_database(store, db).epoch != first.epoch


def test_the_agent_reads_the_counter_under_the_marks_lock(tmp_path: Path) -> None:
    """Read before the lock, a cursor another process handed out meanwhile would raise the
    mark above that reading, and the check would see a restore: a needless full export."""
    store, held = MarkStore(tmp_path), []

    def read_now() -> DatabaseState:
        with pytest.raises(StateError):
            ProcessLock(store.lock_path, "probe").acquire()
        held.append(True)
        return DatabaseState("7", 100)

    check_database(store, read_now)
    assert held == [True]
