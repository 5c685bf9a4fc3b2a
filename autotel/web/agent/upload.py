"""Receiving an update package: the request body streamed to `state/incoming/`.

Read from `wsgi.input` in pieces, never `bottle.request.body` (which copies the body
and breaks on chunked uploads under cheroot). Content-Length and chunked bodies
both work; the limit is checked as bytes arrive, so a lying or missing length
cannot fill the disk. Nothing is left behind when the upload fails.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path
from typing import IO

from autotel.fsutil import atomic_writer

PIECE_BYTES = 1 << 20


class TooLarge(Exception):
    """The body is bigger than allowed."""


class Incomplete(Exception):
    """The client stopped sending before the declared length."""


def read_limited(stream: IO[bytes], length: int, limit: int) -> bytes:
    """A small body (such as `/auth`'s JSON) read whole; `length` -1 means chunked.

    Raises:
        TooLarge: more than `limit` bytes.
    """
    if length > limit:
        raise TooLarge(f"body of {length} bytes; at most {limit}")
    data = stream.read(limit + 1) if length < 0 else stream.read(length)
    if len(data) > limit:
        raise TooLarge(f"body over {limit} bytes")
    return data


def receive_upload(stream: IO[bytes], length: int, limit: int, folder: Path) -> tuple[Path, int]:
    """Stream a body into a new file in `folder`; return (path, bytes).

    Raises:
        TooLarge: the body exceeds `limit` bytes (declared or counted).
        Incomplete: fewer bytes arrived than declared.
    """
    if length > limit:
        raise TooLarge(f"package of {length} bytes; this site accepts at most {limit}")
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"upload-{secrets.token_hex(8)}.zip"
    with atomic_writer(target) as out:
        total = _copy(stream, out, length, limit)
    return target, total


def _copy(stream: IO[bytes], out: IO[bytes], length: int, limit: int) -> int:
    total = 0
    while True:
        want = PIECE_BYTES if length < 0 else min(PIECE_BYTES, length - total)
        if want <= 0:
            return total
        piece = stream.read(want)
        if not piece:
            if length >= 0:
                raise Incomplete(f"upload ended after {total} of {length} bytes")
            return total
        total += len(piece)
        if total > limit:
            raise TooLarge(f"package over {limit} bytes; this site accepts at most {limit}")
        out.write(piece)


def discard(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
