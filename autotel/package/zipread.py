"""Reading an update package's zip without trusting it: bounded, streamed, hashed.

Nothing here decides whether a package is acceptable (that is `rules.py`); this
module only turns the zip into `Entry` descriptions and byte streams whose sizes
are counted as they are read, so a lying or hostile archive cannot make a site
inflate more than the manifest promised.
"""

from __future__ import annotations

import hashlib
import struct
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO, cast

from isal import isal_zlib

from autotel.errors import PackageError, SignatureError
from autotel.package.rules import Entry

CHUNK = 1024 * 1024
# signature, versions, flags, method, time, date, crc, sizes, name and extra lengths
LOCAL_HEADER = struct.Struct("<4sHHHHHIIIHH")
# isal's type stubs declare `error` as an instance; it is the module's exception class.
_INFLATE_ERRORS = (cast(type[Exception], isal_zlib.error),)
Progress = Callable[[int], None]


def open_zip(path: Path, source: str) -> zipfile.ZipFile:
    """Raises: PackageError when `path` is missing or not a zip archive."""
    try:
        return zipfile.ZipFile(path)
    except FileNotFoundError:
        raise PackageError(f"{source}: file not found ({path})") from None
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise PackageError(
            f"{source}: not a zip archive ({e}); was the upload cut short?"
        ) from None


def entry_of(info: zipfile.ZipInfo) -> Entry:
    return Entry(
        name=info.filename,
        raw_name=info.orig_filename,
        size=info.file_size,
        compressed_size=info.compress_size,
        method=info.compress_type,
        encrypted=bool(info.flag_bits & 0x1),
        mode=(info.external_attr >> 16) & 0xFFFF if info.create_system == 3 else 0,
    )


def read_member(zf: zipfile.ZipFile, name: str, limit: int, source: str) -> bytes | None:
    """The whole member `name` (None if absent), read no further than `limit` bytes.

    Raises:
        PackageError: the member is bigger than `limit`.
        SignatureError: the member is corrupt (bad CRC or deflate stream).
    """
    try:
        info = zf.getinfo(name)
    except KeyError:
        return None
    data = b"".join(stream(zf, info, source, limit=limit))
    return data


def stream(
    zf: zipfile.ZipFile, info: zipfile.ZipInfo, source: str, *, limit: int, chunk: int = CHUNK
) -> Iterator[bytes]:
    """Yield the member's bytes, counting them; stop with an error past `limit`.

    Reads the member's compressed bytes straight from the archive and inflates them
    with ISA-L (about twice zlib's speed; hundreds of MB per package), so the
    output is bounded here rather than by zipfile's trust in the declared size.
    No CRC check: every member's SHA-256 is compared with the signed manifest.

    Raises:
        PackageError: more than `limit` bytes come out.
        SignatureError: the local header disagrees with the directory, or the
            compressed bytes are cut short or not valid deflate.
    """
    raw = _raw_chunks(zf, info, source, chunk)
    blocks = raw if info.compress_type == zipfile.ZIP_STORED else _inflate(raw, info, source, chunk)
    count = 0
    for block in blocks:
        count += len(block)
        if count > limit:
            raise PackageError(
                f"{source}: {info.filename} expands beyond {limit} bytes; "
                "refusing a possible zip bomb"
            )
        yield block


def _raw_chunks(
    zf: zipfile.ZipFile, info: zipfile.ZipInfo, source: str, chunk: int
) -> Iterator[bytes]:
    """The member's stored bytes, after checking its local header names the same file."""
    assert zf.fp is not None
    with open(zf.fp.name, "rb") as f:  # an own handle: zipfile's may be shared
        f.seek(info.header_offset)
        header = f.read(LOCAL_HEADER.size)
        if len(header) != LOCAL_HEADER.size or header[:4] != b"PK\x03\x04":
            raise SignatureError(
                f"{source}: {info.filename} has no valid local header; the zip is corrupt"
            )
        name_len, extra_len = LOCAL_HEADER.unpack(header)[-2:]
        name = f.read(name_len)
        if name != _encoded_name(info):
            raise SignatureError(
                f"{source}: {info.filename} is named {name!r} in its local header; "
                "the zip was altered"
            )
        f.seek(extra_len, 1)
        left = info.compress_size
        while left > 0:
            block = f.read(min(chunk, left))
            if not block:
                raise SignatureError(
                    f"{source}: {info.filename} is cut short; the zip is incomplete"
                )
            left -= len(block)
            yield block


def _inflate(
    raw: Iterator[bytes], info: zipfile.ZipInfo, source: str, chunk: int
) -> Iterator[bytes]:
    inflater = isal_zlib.decompressobj(-15)
    try:
        for block in raw:
            data = inflater.decompress(block, chunk)
            while data:
                yield data
                data = (
                    inflater.decompress(inflater.unconsumed_tail, chunk)
                    if inflater.unconsumed_tail
                    else b""
                )
        tail = inflater.flush()
        if tail:
            yield tail
    except _INFLATE_ERRORS as e:
        raise SignatureError(
            f"{source}: {info.filename} is not valid deflate data ({e}); the "
            "package was altered or cut short"
        ) from None
    if not inflater.eof:
        raise SignatureError(
            f"{source}: {info.filename} ends before its deflate data does; "
            "the package was altered or cut short"
        )


def _encoded_name(info: zipfile.ZipInfo) -> bytes:
    encoding = "utf-8" if info.flag_bits & 0x800 else "cp437"
    return info.orig_filename.encode(encoding)


def member_sha256(
    zf: zipfile.ZipFile,
    info: zipfile.ZipInfo,
    source: str,
    *,
    limit: int,
    progress: Progress | None = None,
) -> tuple[str, int]:
    """(hex sha256, size) of a member, reading at most `limit` bytes."""
    digest = hashlib.sha256()
    size = 0
    for block in stream(zf, info, source, limit=limit):
        digest.update(block)
        size += len(block)
        if progress is not None:
            progress(len(block))
    return digest.hexdigest(), size


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a whole file, read in blocks (packages can be hundreds of MB)."""
    with open(path, "rb") as f:
        return stream_sha256(f)


def stream_sha256(f: BinaryIO) -> str:
    """Hex SHA-256 of what is left to read in `f`, read in blocks."""
    digest = hashlib.sha256()
    while block := f.read(CHUNK):
        digest.update(block)
    return digest.hexdigest()
