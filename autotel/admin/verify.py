"""Checking a received export archive against what the agent announced.

The agent announces the body's length, SHA-256 and record count in headers before
sending it. `ArchiveVerifier` is fed the body piece by piece as it arrives (so the
check costs no second pass over the file) and `finish` compares: a truncated,
altered or mis-counted archive never becomes a stored one, and the client's
cursor stays where it was.
"""

from __future__ import annotations

import hashlib
import queue
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass

from isal import isal_zlib

from autotel.errors import TransferError

_QUEUED_CHUNKS = 64  # bounds memory: at most this many received chunks wait for the check
_INFLATE_SLICE = 64 * 1024  # compressed bytes inflated at a time (see `_inflate`)
_GZIP = 31  # wbits: a gzip header and trailer (CRC-32, length) around the deflate data
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class Announced:
    """What the export response's headers promise about its body."""

    length: int
    sha256: str
    records: int
    cursor: str
    period_end: str
    reset: str = ""  # X-Cursor-Reset: the site's database changed; every row was sent

    @classmethod
    def from_headers(cls, headers: Mapping[str, str]) -> Announced:
        """Raises: TransferError when a header is missing or malformed."""
        return cls(
            length=_count_header(headers, "Content-Length"),
            sha256=_sha_header(headers),
            records=_count_header(headers, "X-Record-Count"),
            cursor=_required(headers, "X-Cursor"),
            period_end=headers.get("X-Period-End", ""),
            reset=headers.get("X-Cursor-Reset", "").strip(),
        )


class ArchiveVerifier:
    """Hash, size, gzip integrity (CRC and length of every member) and line count."""

    def __init__(self) -> None:
        self._sha = hashlib.sha256()
        self.size = 0
        self.records = 0
        self._inflater = isal_zlib.decompressobj(wbits=_GZIP)
        self._last_byte = b"\n"  # an empty archive ends "on a line boundary"
        self._gzip_error = ""  # kept for `finish`: a hash mismatch explains it better

    def update(self, chunk: bytes) -> None:
        self.measure(chunk)
        self.inspect(chunk)

    def measure(self, chunk: bytes) -> None:
        """The cheap half (hash, size): `BackgroundVerifier` runs it on the receiving thread."""
        self._sha.update(chunk)
        self.size += len(chunk)

    def inspect(self, chunk: bytes) -> None:
        """The costly half (inflate, count lines), ten times the bytes of the archive."""
        if not self._gzip_error:
            self._inflate(chunk)

    def finish(self, announced: Announced) -> None:
        """Raises: TransferError naming the first check that failed, expected vs got."""
        if self.size != announced.length:
            raise TransferError(
                f"archive truncated: {self.size} of {announced.length} bytes arrived"
            )
        digest = self._sha.hexdigest()
        if digest != announced.sha256:
            raise TransferError(
                f"archive SHA-256 mismatch (announced {announced.sha256[:12]}…, got {digest[:12]}…)"
            )
        if self._gzip_error:
            raise TransferError(f"archive is not valid gzip data ({self._gzip_error})")
        if self.size and not self._inflater.eof:
            raise TransferError("archive is an incomplete gzip stream (no trailer)")
        if self._last_byte != b"\n":
            self.records += 1  # a last line without its newline is still a record
            self._last_byte = b"\n"
        if self.records != announced.records:
            raise TransferError(
                f"archive holds {self.records} records, the agent announced {announced.records}"
            )

    def _inflate(self, chunk: bytes) -> None:
        """Inflate `chunk` in slices of `_INFLATE_SLICE`, so each slice's output (about ten
        times larger) is counted while it is still in the CPU cache: a third faster than
        inflating a whole received chunk into one large buffer."""
        view = memoryview(chunk)
        for start in range(0, len(view), _INFLATE_SLICE):
            if self._gzip_error:
                return
            self._inflate_slice(view[start : start + _INFLATE_SLICE])

    def _inflate_slice(self, data: bytes | memoryview) -> None:
        while data:
            if self._inflater.eof:  # the agent may send several gzip members back to back
                self._inflater = isal_zlib.decompressobj(wbits=_GZIP)
            try:
                out = self._inflater.decompress(data)
            except isal_zlib.error as e:  # type: ignore[misc]  # the stub types it as an instance
                self._gzip_error = str(e)
                return
            if out:
                self.records += out.count(b"\n")
                self._last_byte = out[-1:]
            data = self._inflater.unused_data if self._inflater.eof else b""


class BackgroundVerifier:
    """An `ArchiveVerifier` on its own thread, so checking overlaps receiving.

    Inflating a large archive costs more than receiving it; ISA-L releases the GIL, so
    on two cores the check overlaps the transfer. Only the inflating runs on the
    thread: hashing (hashlib also releases the GIL) stays with the receiver, which
    mostly waits on the network, so the thread that finishes last has less to do.
    """

    def __init__(self) -> None:
        self._verifier = ArchiveVerifier()
        self._chunks: queue.Queue[bytes | None] = queue.Queue(_QUEUED_CHUNKS)
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="archive-verifier", daemon=True)
        self._thread.start()

    def update(self, chunk: bytes) -> None:
        self._verifier.measure(chunk)
        self._chunks.put(chunk)

    def finish(self, announced: Announced) -> ArchiveVerifier:
        """Raises: TransferError as `ArchiveVerifier.finish` does."""
        self.close()
        if self._failure is not None:
            raise TransferError(f"checking the archive failed: {self._failure}") from self._failure
        self._verifier.finish(announced)
        return self._verifier

    def close(self) -> None:
        """Stop the thread (also when the transfer broke off); idempotent."""
        if self._thread.is_alive():
            self._chunks.put(None)
            self._thread.join()

    def _run(self) -> None:
        while (chunk := self._chunks.get()) is not None:
            if self._failure is None:
                try:
                    self._verifier.inspect(chunk)
                except Exception as e:  # noqa: BLE001 - handed to the receiving thread
                    self._failure = e


def _required(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name)
    if value is None or not value.strip():
        raise TransferError(f"the agent's export answer lacks the {name} header")
    return value.strip()


def _count_header(headers: Mapping[str, str], name: str) -> int:
    value = _required(headers, name)
    if not value.isdigit():
        raise TransferError(f"the agent's {name} header is not a count: {value[:40]!r}")
    return int(value)


def _sha_header(headers: Mapping[str, str]) -> str:
    value = _required(headers, "X-Content-SHA256").lower()
    if not _SHA256.match(value):
        raise TransferError(f"the agent's X-Content-SHA256 header is not a SHA-256: {value[:70]!r}")
    return value
