"""Receiving an update package: the request body streamed to `state/incoming/`.

Read through `RequestBody` in pieces, never `bottle.request.body` (which copies the
body and breaks on chunked uploads under cheroot). Content-Length and chunked bodies
both work; the limit is checked as bytes arrive, so a lying or missing length cannot
fill the disk. Nothing is left behind when the upload fails. What a crash of the
agent leaves behind (a temporary file cut off mid-upload, an upload no job took) is
removed by `sweep_incoming` when the agent starts again.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import secrets
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import IO

from autotel.errors import BodyTooLargeError, DiskSpaceError
from autotel.fsutil import TEMP_SUFFIX, atomic_writer, megabytes
from autotel.web.bodies import RequestBody

log = logging.getLogger("autotel.agent")

PIECE_BYTES = 1 << 20
UPLOAD_PREFIX, UPLOAD_SUFFIX = "upload-", ".zip"
# errors by which the OS says the disk (or the user's quota on it) is full
DISK_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


def receive_upload(body: RequestBody, limit: int, folder: Path) -> Path:
    """Stream the body into a new file in `folder` and return its path.

    Raises:
        BodyTooLargeError: the body exceeds `limit` bytes (declared or counted).
        IncompleteBodyError, BodyTimeoutError, RequestError: as `RequestBody.read` says.
        DiskSpaceError: the declared length does not fit on the disk, or the disk filled up.
    """
    check_room(body, limit, folder)
    target = folder / f"{UPLOAD_PREFIX}{secrets.token_hex(8)}{UPLOAD_SUFFIX}"
    try:
        with atomic_writer(target) as out:
            write_body(body, limit, out)
    except OSError as e:
        raise_if_disk_full(e, body, folder)
        raise
    return target


def check_room(body: RequestBody, limit: int, folder: Path) -> None:
    """Raises: BodyTooLargeError or DiskSpaceError for a declared length that cannot fit."""
    if body.length > limit:
        raise too_large(body.length, limit)
    folder.mkdir(parents=True, exist_ok=True)
    free = _free_bytes(folder)
    if free is not None and body.length > free:
        raise _disk_full(f"the package needs {megabytes(body.length)}", folder)


def too_large(size: int, limit: int) -> BodyTooLargeError:
    return BodyTooLargeError(
        f"package of {size} bytes; this site accepts at most {limit} (agent.max_update_mb)")


def write_body(body: RequestBody, limit: int, out: IO[bytes], piece_bytes: int = PIECE_BYTES) -> None:
    """Copy the body to `out` in reads of `piece_bytes` (a read the link breaks loses its
    piece). Raises: as `receive_upload` (the disk's errors as OSError)."""
    for piece in _pieces(body, limit, piece_bytes):
        out.write(piece)


def raise_if_disk_full(error: OSError, body: RequestBody, folder: Path) -> None:
    """Raises: DiskSpaceError, an error the admin can act on, when `error` says the disk
    (or the quota on it) is full."""
    if error.errno in DISK_FULL:
        needed = megabytes(body.length) if body.length >= 0 else "more room"
        raise _disk_full(f"the package needs {needed}", folder) from error


def _pieces(body: RequestBody, limit: int, piece_bytes: int) -> Iterable[bytes]:
    total = 0
    while True:
        want = piece_bytes if body.length < 0 else min(piece_bytes, body.length - total)
        if want <= 0:
            return
        piece = body.read(want)
        if not piece:
            if body.length >= 0:
                raise body.ended_early(total)
            return
        total += len(piece)
        if total > limit:
            raise BodyTooLargeError(
                f"package over {limit} bytes; this site accepts at most {limit} "
                "(agent.max_update_mb)"
            )
        yield piece


def _disk_full(needed: str, folder: Path) -> DiskSpaceError:
    return DiskSpaceError(
        f"the site's disk is full: {needed}, only {megabytes(_free_bytes(folder) or 0)} is free "
        f"in {folder}; free some space on the site PC and send it again"
    )


def _free_bytes(folder: Path) -> int | None:
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None



def discard(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def is_stale_upload(name: str) -> bool:
    """Whether `name` is something `receive_upload` writes: a finished upload or its
    temporary file (`atomic_writer` names it `.upload-<hex>.zip.<random>.tmp`)."""
    finished = name.startswith(UPLOAD_PREFIX) and name.endswith(UPLOAD_SUFFIX)
    temporary = name.startswith("." + UPLOAD_PREFIX) and name.endswith(TEMP_SUFFIX)
    return finished or temporary


def sweep_incoming(folder: Path, keep: set[Path]) -> list[str]:
    """Remove the uploads a crashed agent left in `folder`, except the files in `keep`
    (those a queued or running `receive` job will still read); return the names removed.

    Call it only when the agent starts: it is the only writer, so then no upload is in
    progress. Other files are not the agent's and are left alone.
    """
    removed = []
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return []
    kept = {p.resolve() for p in keep}
    for entry in entries:
        path = Path(entry.path)
        if not is_stale_upload(entry.name) or not entry.is_file(follow_symlinks=False):
            continue
        if path.resolve() in kept:
            continue
        try:
            path.unlink()
        except FileNotFoundError:
            continue
        except OSError as e:  # on Windows a file still open elsewhere; try at the next start
            log.warning("could not remove the stale upload %s: %s", path, e)
            continue
        removed.append(entry.name)
    return removed
