"""Update uploads that a cut link can resume.

A package of up to `agent.max_update_mb` may have to cross a link that breaks more
often than the package takes to send. An upload that names its package (headers
`X-Upload-SHA256` and `X-Upload-Length`) is written to `state/incoming/resume-<sha256>.part`
and kept when the link breaks; `GET /update/upload?sha256=` says how many bytes of it
the site holds, and the next `POST /update` sends only the rest (`X-Upload-Offset`).
Once whole, the file must hash to the name it was sent under; then it is an upload
like any other, and the `receive` job verifies the package completely as always.

Bounded: one kept upload at a time (starting another package removes the rest, but
not one another request is receiving), none larger than `agent.max_update_mb`, none
on a disk that filled up, and any older than `KEEP_DAYS` is removed when the agent
starts (`sweep_kept`).
"""

from __future__ import annotations

import contextlib
import hmac
import os
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from autotel.errors import IncompleteBodyError, PackageError, RequestError
from autotel.fsutil import fsync_dir
from autotel.package.zipread import file_sha256
from autotel.web.agent.upload import (
    DISK_FULL,
    UPLOAD_PREFIX,
    UPLOAD_SUFFIX,
    check_room,
    discard,
    raise_if_disk_full,
    too_large,
    write_body,
)
from autotel.web.bodies import RequestBody

KEPT_PREFIX, KEPT_SUFFIX = "resume-", ".part"
KEEP_DAYS = 7
KEPT_PIECE = 64 * 1024  # what a break may lose of the bytes that had arrived
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_COUNT = re.compile(r"^\d{1,15}$")


class ResumeRefused(RequestError):
    """The site holds fewer bytes of the package than the upload says were sent (409)."""

    http_status = 409

    def __init__(self, message: str, held: int) -> None:
        super().__init__(message)
        self.held = held


@dataclass(frozen=True)
class ResumableUpload:
    """What an upload says of itself: which package, how long, from which byte."""

    sha256: str
    length: int
    offset: int

    @classmethod
    def from_headers(cls, header: Callable[[str], str | None]) -> ResumableUpload | None:
        """The upload's own description; None when it gives none (an admin of before).

        Raises: RequestError for headers that are there but malformed.
        """
        sha256 = (header("X-Upload-SHA256") or "").strip().lower()
        if not sha256:
            return None
        length, offset = (header(name) or default for name, default in
                          (("X-Upload-Length", ""), ("X-Upload-Offset", "0")))
        if not _SHA256.match(sha256) or not _COUNT.match(length) or not _COUNT.match(offset):
            raise RequestError("X-Upload-SHA256 must be a SHA-256 (64 hex digits), "
                               "X-Upload-Length and X-Upload-Offset byte counts")
        if int(offset) > int(length):
            raise RequestError(f"X-Upload-Offset {offset} is beyond X-Upload-Length {length}")
        return cls(sha256, int(length), int(offset))


def kept_path(folder: Path, sha256: str) -> Path:
    return folder / f"{KEPT_PREFIX}{sha256}{KEPT_SUFFIX}"


def held_bytes(folder: Path, sha256: str) -> int:
    """How many bytes of package `sha256` the site holds from an upload that broke off."""
    if not _SHA256.match(sha256):
        raise RequestError("sha256 must be a SHA-256 (64 hex digits)")
    try:
        return kept_path(folder, sha256).stat().st_size
    except FileNotFoundError:
        return 0


def receive_resumable(body: RequestBody, upload: ResumableUpload, limit: int,
                      folder: Path) -> Path:
    """Add the body to what the site holds of the package; once it is whole and hashes
    to its name, return it as an upload (`receive_upload`'s kind of file).

    Raises:
        ResumeRefused: the site holds fewer bytes than `upload.offset`.
        RequestError: the body is not exactly the rest of the package.
        PackageError: the whole file does not hash to `upload.sha256` (it is removed).
        BodyTooLargeError, IncompleteBodyError: as `receive_upload` (what arrived is kept
            for the next attempt).
        DiskSpaceError: as `receive_upload`; what the site held of the package is removed.
    """
    if upload.length > limit:
        raise too_large(upload.length, limit)
    if body.length >= 0 and upload.offset + body.length != upload.length:
        raise RequestError(f"the body has {body.length} bytes, the rest of the package "
                           f"{upload.length - upload.offset}")
    check_room(body, limit, folder)
    with _receiving(upload.sha256, held_bytes(folder, upload.sha256)):
        kept = _open_kept(folder, upload)
        try:
            with kept:
                write_body(body, upload.length - upload.offset, kept, KEPT_PIECE)
                kept.flush()
                os.fsync(kept.fileno())
        except OSError as e:
            if e.errno in DISK_FULL:
                # unlike a broken link, a full disk is no reason to keep what arrived: the
                # collector writes its readings to this disk, so the room goes back to it
                discard(kept_path(folder, upload.sha256))
            raise_if_disk_full(e, body, folder)
            raise
        return _whole_upload(folder, upload)


_in_progress: set[str] = set()
_in_progress_lock = threading.Lock()


@contextlib.contextmanager
def _receiving(sha256: str, held: int) -> Iterator[None]:
    """Mark package `sha256` as being received, so no other request writes or removes
    its file meanwhile (two admins sending the same package at once, say).

    Raises: ResumeRefused when it is being received already.
    """
    with _in_progress_lock:
        if sha256 in _in_progress:
            raise ResumeRefused("another upload of this package is in progress; "
                                "send it again when that one has ended", held)
        _in_progress.add(sha256)
    try:
        yield
    finally:
        with _in_progress_lock:
            _in_progress.discard(sha256)


def _open_kept(folder: Path, upload: ResumableUpload) -> IO[bytes]:
    """The kept file, positioned at `upload.offset`: new (other packages' files removed)
    when the upload starts, truncated to the offset when it goes on."""
    path = kept_path(folder, upload.sha256)
    if upload.offset == 0:
        for other in folder.glob(f"{KEPT_PREFIX}*{KEPT_SUFFIX}"):
            with _in_progress_lock, contextlib.suppress(OSError):
                if other.name[len(KEPT_PREFIX):-len(KEPT_SUFFIX)] not in _in_progress:
                    other.unlink()  # (this package's own file is truncated below)
        return open(path, "wb")
    held = held_bytes(folder, upload.sha256)
    if held < upload.offset:
        raise ResumeRefused(f"the site holds {held} bytes of this package, not "
                            f"{upload.offset}; send it from byte {held}", held)
    kept = open(path, "r+b")  # noqa: SIM115 (closed by the caller's `with`)
    kept.truncate(upload.offset)
    kept.seek(upload.offset)
    return kept


def _whole_upload(folder: Path, upload: ResumableUpload) -> Path:
    """The kept file as an upload, if it is the whole package named.

    Raises:
        IncompleteBodyError: part of it is still missing (it is kept).
        PackageError: it does not hash to its name (then it is removed).
    """
    path = kept_path(folder, upload.sha256)
    held = path.stat().st_size
    if held != upload.length:  # a chunked body that ended early: kept for the next attempt
        raise IncompleteBodyError(f"the body ended after {held - upload.offset} of the "
                                  f"{upload.length - upload.offset} bytes still missing")
    found = file_sha256(path)
    if not hmac.compare_digest(found, upload.sha256):
        path.unlink()
        raise PackageError(f"the package arrived damaged: its SHA-256 is {found[:12]}…, "
                           f"it was sent as {upload.sha256[:12]}…; send it again")
    target = folder / f"{UPLOAD_PREFIX}{secrets.token_hex(8)}{UPLOAD_SUFFIX}"
    os.replace(path, target)
    fsync_dir(folder)
    return target


def sweep_kept(folder: Path, now: float | None = None) -> list[str]:
    """Remove kept uploads older than `KEEP_DAYS` (an admin that never came back)."""
    cutoff = (now if now is not None else time.time()) - KEEP_DAYS * 86400
    removed = []
    for path in folder.glob(f"{KEPT_PREFIX}*{KEPT_SUFFIX}"):
        with contextlib.suppress(OSError):
            if path.stat().st_mtime < cutoff:
                path.unlink()
                removed.append(path.name)
    return removed
