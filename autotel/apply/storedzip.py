"""Writing a stored (uncompressed) zip of many files in one pass: the backup's format.

`zipfile` takes about 80 µs per entry on top of the copy (a ZipInfo built from a
stat, a write handle, the header rewritten after the data): for the 1,000 small
files of a typical update that is twice the copy itself. Here a file up to
`WHOLE` bytes is read once, its CRC-32 taken (ISA-L) and header and data written
together; a bigger one is copied in blocks and its CRC-32 written into its header
afterwards (the output is a seekable file). The result is the plain PKZIP format
`zipfile` reads, with zip64 records wherever a size, an offset or the number of
entries needs them, so a backup of any size can be checked and restored.
"""

from __future__ import annotations

import os
import stat
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from isal import isal_zlib

from autotel.package.zipread import LOCAL_HEADER

WHOLE = 1 << 20
# Above these a size/offset or the entry count goes into zip64 records (a module
# constant so tests can cross it without writing 4 GiB, as CPython's own tests do).
ZIP64_LIMIT = 0xFFFFFFFF
ZIP64_COUNT_LIMIT = 0xFFFF

_CENTRAL = struct.Struct("<4sHHHHHHIIIHHHHHII")
_END = struct.Struct("<4sHHHHIIH")
_END64 = struct.Struct("<4sQHHIIQQQQ")
_LOCATOR64 = struct.Struct("<4sIQI")
_MADE_BY = (3 << 8) | 45  # Unix attributes, zip spec 4.5
_UTF8 = 0x800


@dataclass
class _Entry:
    name: bytes
    crc: int
    size: int
    offset: int
    mode: int
    dos_time: tuple[int, int]


class StoredZipWriter:
    """Append files to `out` (a new, seekable binary file); `close()` writes the directory."""

    def __init__(self, out: IO[bytes]) -> None:
        self._out = out
        self._entries: list[_Entry] = []

    def add_file(self, source: Path, name: str) -> None:
        """Store `source` as `name`.

        Raises:
            OSError: `source` cannot be read, or changed size while it was read.
        """
        with open(source, "rb") as f:
            info = os.fstat(f.fileno())
            mode = stat.S_IMODE(info.st_mode) | stat.S_IFREG
            if info.st_size <= WHOLE:
                data = f.read(info.st_size + 1)
                _check_size(source, len(data), info.st_size)
                self._add(name, data, mode, info.st_mtime)
            else:
                self._copy(f, source, name, info.st_size, mode, info.st_mtime)

    def add_bytes(self, name: str, data: bytes, mode: int = 0o644) -> None:
        self._add(name, data, stat.S_IFREG | mode, time.time())

    def close(self) -> None:
        """Write the central directory and the end records (zip64 ones where needed)."""
        start = self._out.tell()
        for entry in self._entries:
            self._out.write(_central(entry))
        end = self._out.tell()
        count, size = len(self._entries), end - start
        if count >= ZIP64_COUNT_LIMIT or start >= ZIP64_LIMIT or size >= ZIP64_LIMIT:
            self._out.write(_END64.pack(b"PK\x06\x06", _END64.size - 12, _MADE_BY, 45, 0, 0,
                                        count, count, size, start))
            self._out.write(_LOCATOR64.pack(b"PK\x06\x07", 0, end, 1))
        entries = 0xFFFF if count >= ZIP64_COUNT_LIMIT else count
        self._out.write(_END.pack(b"PK\x05\x06", 0, 0, entries, entries, _field(size),
                                  _field(start), 0))

    def _add(self, name: str, data: bytes, mode: int, mtime: float) -> None:
        entry = self._entry(name, isal_zlib.crc32(data), len(data), mode, mtime)
        self._out.write(_local(entry))
        self._out.write(data)

    def _copy(self, f: IO[bytes], source: Path, name: str, size: int, mode: int,
              mtime: float) -> None:
        entry = self._entry(name, 0, size, mode, mtime)
        self._out.write(_local(entry))
        copied = crc = 0
        while copied <= size and (block := f.read(min(WHOLE, size - copied + 1))):
            crc = isal_zlib.crc32(block, crc)
            copied += len(block)
            self._out.write(block)
        _check_size(source, copied, size)
        entry.crc = crc
        after = self._out.tell()
        self._out.seek(entry.offset + 14)
        self._out.write(struct.pack("<I", crc))
        self._out.seek(after)

    def _entry(self, name: str, crc: int, size: int, mode: int, mtime: float) -> _Entry:
        entry = _Entry(name.encode("utf-8"), crc, size, self._out.tell(), mode, _dos_time(mtime))
        self._entries.append(entry)
        return entry


def _local(entry: _Entry) -> bytes:
    extra = struct.pack("<HHQQ", 1, 16, entry.size, entry.size) if entry.size >= ZIP64_LIMIT else b""
    size = _field(entry.size)
    return LOCAL_HEADER.pack(b"PK\x03\x04", 45 if extra else 20, _UTF8, 0, *entry.dos_time,
                       entry.crc, size, size, len(entry.name), len(extra)) + entry.name + extra


def _central(entry: _Entry) -> bytes:
    big = [v for v in (entry.size, entry.size, entry.offset) if v >= ZIP64_LIMIT]
    extra = struct.pack(f"<HH{len(big)}Q", 1, 8 * len(big), *big) if big else b""
    size, offset = _field(entry.size), _field(entry.offset)
    return _CENTRAL.pack(b"PK\x01\x02", _MADE_BY, 45 if extra else 20, _UTF8, 0,
                         *entry.dos_time, entry.crc, size, size, len(entry.name), len(extra),
                         0, 0, 0, entry.mode << 16, offset) + entry.name + extra


def _field(value: int) -> int:
    """A 32-bit size or offset, or the marker that says it is in the zip64 extra field."""
    return 0xFFFFFFFF if value >= ZIP64_LIMIT else value


def _dos_time(mtime: float) -> tuple[int, int]:
    """(time, date) in MS-DOS form, which only spans 1980–2107; other times are clamped."""
    t = time.localtime(min(max(mtime, 315619200), 4354732800))
    return ((t.tm_hour << 11) | (t.tm_min << 5) | (t.tm_sec // 2),
            ((t.tm_year - 1980) << 9) | (t.tm_mon << 5) | t.tm_mday)


def _check_size(source: Path, read: int, expected: int) -> None:
    if read != expected:
        raise OSError(f"{source} changed while it was backed up ({expected} bytes when it "
                      f"was opened, {read} read)")
