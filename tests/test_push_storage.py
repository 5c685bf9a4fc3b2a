"""Receiving archives into the admin's storage: verify, store, then move the cursor.

Real gzip bodies fed as the network would feed them; the only fake is a failing
`os.replace` (a disk that fails at the worst moment), which is outside the product.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from autotel.admin.storage import ClientStorage
from autotel.admin.verify import Announced, ArchiveVerifier
from autotel.errors import ConfigError, StateError, TransferError


def body_of(lines: list[str], members: int = 1) -> bytes:
    """A gzip body of JSON lines, optionally as several members (the agent's form)."""
    step = max(1, -(-len(lines) // members))
    parts = [lines[i : i + step] for i in range(0, len(lines), step)] or [[]]
    return b"".join(gzip.compress("".join(line + "\n" for line in part).encode()) for part in parts)


def announce(body: bytes, records: int, cursor: str = "v1.next") -> Announced:
    return Announced(
        length=len(body),
        sha256=hashlib.sha256(body).hexdigest(),
        records=records,
        cursor=cursor,
        period_end="2026-11-29T12:00:00Z",
    )


def pieces(body: bytes, size: int = 7) -> Iterator[bytes]:
    return (body[i : i + size] for i in range(0, len(body), size))


LINES = [json.dumps({"id": i, "sensor": f's\t"{i}"\n', "value": i / 3}) for i in range(500)]


@pytest.fixture
def storage(tmp_path: Path) -> Iterator[ClientStorage]:
    store = ClientStorage(tmp_path / "data", "plant_A")
    with store.locked():
        yield store


def archives(storage: ClientStorage) -> list[Path]:
    """What the client folder holds besides its cursor file: archives only, never a temp."""
    return sorted(p for p in storage.client_dir.iterdir() if p != storage.cursor_file)


def assert_nothing_stored(storage: ClientStorage) -> None:
    assert archives(storage) == []
    assert [p for p in storage.incoming.iterdir() if p.suffix == ".part"] == []


@pytest.mark.parametrize("members", [1, 3])
def test_verified_archive_is_stored_then_cursor_moves(storage: ClientStorage, members: int) -> None:
    body = body_of(LINES, members)
    assert storage.read_cursor() is None
    stored = storage.receive(announce(body, len(LINES)), pieces(body))
    assert stored.records == len(LINES) and stored.size == len(body)
    assert stored.archive is not None and stored.archive.parent == storage.client_dir
    assert stored.archive.read_bytes() == body
    assert gzip.decompress(body).decode().splitlines() == LINES
    assert storage.read_cursor() == "v1.next"
    assert archives(storage) == [stored.archive]


def test_empty_export_moves_cursor_and_keeps_no_file(storage: ClientStorage) -> None:
    body = body_of([])
    stored = storage.receive(announce(body, 0, "v1.empty"), pieces(body))
    assert stored.archive is None and stored.records == 0
    assert storage.read_cursor() == "v1.empty"
    assert_nothing_stored(storage)


def test_last_line_without_newline_still_counts() -> None:
    body = gzip.compress(b'{"a": 1}\n{"a": 2}')
    verifier = ArchiveVerifier()
    verifier.update(body)
    verifier.finish(announce(body, 2))


def test_large_body_in_uneven_chunks_counts_every_record() -> None:
    """Members and received chunks cross the verifier's inflate slices at odd places."""
    lines = [json.dumps({"id": i, "noise": os.urandom(24).hex()}) for i in range(20_000)]
    body = body_of(lines, 5)
    assert len(body) > 4 * 64 * 1024
    for size in (len(body), 100_003, 65_536):
        verifier = ArchiveVerifier()
        for piece in pieces(body, size):
            verifier.update(piece)
        verifier.finish(announce(body, len(lines)))
        assert verifier.records == len(lines)


def tamper(body: bytes) -> bytes:
    middle = len(body) // 2
    return body[:middle] + bytes([body[middle] ^ 0xFF]) + body[middle + 1 :]


BODY = body_of(LINES, 2)
BAD_TRANSFERS = {
    "truncated": (BODY[:-100], announce(BODY, len(LINES)), "truncated"),
    "altered": (tamper(BODY), announce(BODY, len(LINES)), "SHA-256 mismatch"),
    "miscounted": (BODY, announce(BODY, len(LINES) + 1), "holds 500 records"),
    "altered, hash recomputed": (tamper(BODY), announce(tamper(BODY), len(LINES)), "gzip"),
    "no gzip trailer": (BODY[:-4], announce(BODY[:-4], len(LINES)), "gzip"),
    "not gzip": (b"x" * 100, announce(b"x" * 100, 0), "gzip"),
}


@pytest.mark.parametrize("case", sorted(BAD_TRANSFERS))
def test_bad_transfer_stores_nothing_and_keeps_cursor(storage: ClientStorage, case: str) -> None:
    good = body_of(LINES[:10])
    storage.receive(announce(good, 10, "v1.before"), pieces(good))
    before = archives(storage)
    body, announced, message = BAD_TRANSFERS[case]
    with pytest.raises(TransferError, match=message):
        storage.receive(announced, pieces(body, 4096))
    assert archives(storage) == before
    assert storage.read_cursor() == "v1.before"
    assert [p for p in storage.incoming.iterdir() if p.suffix == ".part"] == []


def test_stream_broken_midway_stores_nothing(storage: ClientStorage) -> None:
    def broken() -> Iterator[bytes]:
        yield BODY[:1000]
        raise TransferError("connection reset")

    with pytest.raises(TransferError, match="reset"):
        storage.receive(announce(BODY, len(LINES)), broken())
    assert_nothing_stored(storage)
    assert storage.read_cursor() is None


ETAG = '"20261129T120000000000Z-abcdef-export.' + "0" * 64 + '"'


def broken_at(body: bytes, at: int) -> Iterator[bytes]:
    yield body[:at]
    raise httpx.RemoteProtocolError("peer closed connection")  # as a cut link, in the session


def test_a_broken_download_is_kept_and_resumed_whole(storage: ClientStorage) -> None:
    with pytest.raises(httpx.RemoteProtocolError):
        storage.receive(announce(BODY, len(LINES)), broken_at(BODY, 1000), etag=ETAG, asked=None)
    assert storage.read_cursor() is None and archives(storage) == []
    point = storage.resume_point(None)
    assert point is not None and (point.etag, point.offset) == (ETAG, 1000)
    stored = storage.receive(announce(BODY, len(LINES)), pieces(BODY[1000:], 4096), etag=ETAG,
                             asked=None, resumed_from=1000)
    assert stored.records == len(LINES) and storage.read_cursor() == "v1.next"
    assert stored.archive is not None and stored.archive.read_bytes() == BODY
    assert list(storage.incoming.iterdir()) == []


@pytest.mark.parametrize(("damage", "message"), [
    ("kept bytes", "SHA-256 mismatch"), ("other archive", "resumed another archive")])
def test_a_resume_that_does_not_add_up_stores_nothing(
    storage: ClientStorage, damage: str, message: str
) -> None:
    with pytest.raises(httpx.RemoteProtocolError):
        storage.receive(announce(BODY, len(LINES)), broken_at(BODY, 1000), etag=ETAG)
    announced = announce(BODY, len(LINES))
    if damage == "kept bytes":  # e.g. a power cut before the kept bytes reached the disk
        storage.partial.write_bytes(tamper(BODY[:1000]))
    else:
        announced = announce(tamper(BODY), len(LINES))
    with pytest.raises(TransferError, match=message):
        storage.receive(announced, pieces(BODY[1000:], 4096), etag=ETAG, resumed_from=1000)
    assert archives(storage) == [] and storage.read_cursor() is None
    assert list(storage.incoming.iterdir()) == [] and storage.resume_point(None) is None


class FailingReplace:
    """A fake disk: `os.replace` fails for targets in one folder (outside the product)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.real = os.replace

    def __call__(self, src: os.PathLike[str] | str, dst: os.PathLike[str] | str) -> None:
        if Path(dst).parent == self.folder:
            raise OSError(28, "No space left on device")
        self.real(src, dst)


def test_failed_rename_keeps_cursor(
    storage: ClientStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "replace", FailingReplace(storage.client_dir))
    with pytest.raises(StateError, match="No space left"):
        storage.receive(announce(BODY, len(LINES), "v1.lost"), pieces(BODY))
    monkeypatch.undo()
    assert_nothing_stored(storage)
    assert storage.read_cursor() is None


def test_crash_after_rename_adopts_the_journaled_cursor(
    storage: ClientStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The archive made it but the final cursor write did not: no re-export of its rows."""
    real_replace, calls = os.replace, []

    def fail_on_third(src: str, dst: str) -> None:  # 1st: journal, 2nd: archive, 3rd: cursor
        calls.append(dst)
        if len(calls) == 3:
            raise OSError(5, "Input/output error")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", fail_on_third)
    with pytest.raises(StateError):
        storage.receive(announce(BODY, len(LINES), "v1.after"), pieces(BODY))
    monkeypatch.undo()
    assert len(list(storage.client_dir.glob("*.jsonl.gz"))) == 1
    assert storage.read_cursor() == "v1.after"


@pytest.mark.parametrize("client_id", ["", "..", "a/b", "a\\b", ".hidden", "x" * 101])
def test_unsafe_client_ids_are_refused(tmp_path: Path, client_id: str) -> None:
    with pytest.raises(ConfigError, match="client-id"):
        ClientStorage(tmp_path, client_id)


def test_second_push_of_same_client_is_refused(tmp_path: Path) -> None:
    first = ClientStorage(tmp_path, "plant_A")
    second = ClientStorage(tmp_path, "plant_A")
    with first.locked(), pytest.raises(StateError, match="push of plant_A"), second.locked():
        pass
    with first.locked(), ClientStorage(tmp_path, "plant_B").locked():
        pass


def test_leftover_temp_files_of_a_killed_push_are_removed(tmp_path: Path) -> None:
    store = ClientStorage(tmp_path, "plant_A")
    store.incoming.mkdir(parents=True)
    (store.incoming / "plant_A~abc.part").write_bytes(b"half")
    (store.incoming / "plant_A.b~abc.part").write_bytes(b"another client's")
    with store.locked():
        pass
    assert [p.name for p in store.incoming.iterdir()] == ["plant_A.b~abc.part"]
