"""Export archives on disk: a gzip file written as whole members, and the folder's upkeep.

Several readers (one per database connection) compress their own rows into
complete gzip members and append them to one file under a lock. A file of
concatenated members is standard gzip (RFC 1952, `gzip -t` and Python's `gzip`
read it whole), so the readers never wait on each other's compression, and memory
stays at one buffer per reader whatever the row count.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import IO

from isal import isal_zlib

ARCHIVE_SUFFIX = ".jsonl.gz"
GZIP_WBITS = 31  # zlib's way of saying: gzip header and trailer
COMPRESS_LEVEL = 1  # ISA-L levels are 0-3; 1 is the fast one the benchmark was measured with
MEMBER_BYTES = 1 << 20
FRESH_S = 60.0  # an archive this young may be about to be served (see `prune`)


class MemberSink:
    """Appends gzip members to an open file, keeping its SHA-256 and size as it goes."""

    def __init__(self, out: IO[bytes]) -> None:
        self._out = out
        self._lock = threading.Lock()
        self._sha = hashlib.sha256()
        self.size = 0

    def add(self, lines: bytes | bytearray) -> None:
        """Compress whole lines into one member (outside the lock) and append it."""
        member = isal_zlib.compress(lines, COMPRESS_LEVEL, GZIP_WBITS)
        with self._lock:
            self._out.write(member)
            self._sha.update(member)
            self.size += len(member)

    def hexdigest(self) -> str:
        return self._sha.hexdigest()


class LineBatcher:
    """Collects rows of one reader into members of about `MEMBER_BYTES`; counts the lines."""

    def __init__(self, sink: MemberSink) -> None:
        self._sink = sink
        self._buffer = bytearray()
        self.lines = 0

    def add(self, block: bytes | memoryview) -> None:
        self._buffer += block
        if len(self._buffer) >= MEMBER_BYTES:
            self.flush()

    def flush(self) -> None:
        if self._buffer:
            self.lines += self._buffer.count(b"\n")
            self._sink.add(self._buffer)
            self._buffer = bytearray()


def archive_name(stamp: str, xmax: int) -> str:
    """`20261129T114000123456Z-x123456.jsonl.gz`: sorts by time, names its snapshot's xmax."""
    return f"{stamp}-x{xmax}{ARCHIVE_SUFFIX}"


def archives(folder: Path) -> list[Path]:
    """Finished archives, oldest first (temporary files start with a dot and are skipped)."""
    try:
        return sorted(
            p
            for p in folder.iterdir()
            if p.name.endswith(ARCHIVE_SUFFIX) and not p.name.startswith(".")
        )
    except FileNotFoundError:
        return []


def prune(folder: Path, keep: Iterable[str], now: float | None = None) -> list[str]:
    """Remove the archives older than the newest one in `keep` that no answer may still
    need; return their names.

    Spared: those in `keep` (being served), those written in the last `FRESH_S` seconds
    (an export that just finished for another request, whose answer has not opened it
    yet), and the newest of the rest: it may be a download that broke, which its admin
    will resume while another admin's pushes go on. Whether an archive arrived whole the
    agent cannot tell (its last bytes may sit in a socket buffer when the link breaks),
    so one is kept either way. A file that cannot be removed now (open elsewhere on
    Windows) is left for the next prune.
    """
    kept = set(keep)
    if not kept:
        return []
    newest = max(kept)
    settled = (time.time() if now is None else now) - FRESH_S
    older = [p for p in archives(folder) if p.name < newest and p.name not in kept]
    removed = []
    for path in older[:-1]:
        with contextlib.suppress(OSError):
            if path.stat().st_mtime < settled:
                path.unlink()
                removed.append(path.name)
    return removed
