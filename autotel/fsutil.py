"""Atomic file writes: the only way autotel writes a file that is read back later.

A power cut on a plant PC must leave either the old file or the new one, never a
torn one. So: write a temporary file in the same folder, flush, fsync, `os.replace`
over the target, then fsync the folder where the OS allows it (not on Windows).

On Windows a file cannot be renamed over, or moved, while another process has it
open (a reader such as `autotel jobs ls`); `replace` retries that for a moment
instead of failing the writer.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

TEMP_SUFFIX = ".tmp"
# How long `replace` keeps retrying a rename that Windows refuses because a reader
# has the file open; readers hold job and state files for milliseconds.
SHARING_RETRY_S = 2.0


def replace(source: Path, target: Path) -> None:
    """`os.replace`, retried briefly on Windows while another process holds a file open.

    Raises:
        OSError: the rename failed (on Windows: still refused after SHARING_RETRY_S).
    """
    if os.name != "nt":
        os.replace(source, target)
        return
    deadline = time.monotonic() + SHARING_RETRY_S
    while True:
        try:
            os.replace(source, target)
            return
        except PermissionError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.01)


def fsync_dir(folder: Path) -> None:
    """Make a rename inside `folder` durable; a no-op where folders cannot be opened."""
    if os.name == "nt":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_writer(
    target: Path, mode: int | None = None, *, tmp_dir: Path | None = None
) -> Iterator[IO[bytes]]:
    """Yield a binary file that replaces `target` only if the block ends without error.

    On any exception the temporary file is removed and `target` is left untouched.
    `tmp_dir` puts the temporary file elsewhere on the same file system, for folders
    where readers must never see one (an admin's per-client archive folder).
    """
    target = Path(target)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{target.name}.", suffix=TEMP_SUFFIX, dir=tmp_dir or target.parent
    )
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    fsync_dir(target.parent)


def atomic_write_bytes(target: Path, data: bytes, mode: int | None = None) -> None:
    with atomic_writer(target, mode) as f:
        f.write(data)


def atomic_write_text(target: Path, text: str, mode: int | None = None) -> None:
    atomic_write_bytes(target, text.encode("utf-8"), mode)


def atomic_write_json(target: Path, data: Any) -> None:
    atomic_write_text(target, json.dumps(data, ensure_ascii=False, indent=2) + "\n")


def append_line(target: Path, line: str, durable: bool = True) -> None:
    """Append one line to a log such as events.jsonl; a single write so lines never interleave.

    `durable=False` skips the fsync, for lines whose loss in a power cut costs nothing
    (a progress tick): an fsync while an apply writes 50 MB waits for that data too.
    """
    data = (line.rstrip("\n") + "\n").encode("utf-8")
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_BINARY", 0), 0o644)
    try:
        os.write(fd, data)
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)


MB = 1024 * 1024


def megabytes(size: int) -> str:
    """A size as a plant admin reads it in a message: `150 MB`, `3.1 MB`."""
    return f"{size / 1e6:.0f} MB" if size >= 10e6 else f"{size / 1e6:.1f} MB"


def previous_generation(path: Path) -> Path:
    """Where `rotate` keeps the last generation of a log: `<name>.1`."""
    return path.with_name(path.name + ".1")


def rotate(path: Path, max_bytes: int) -> bool:
    """Once the log at `path` is over `max_bytes`, rename it to `<name>.1` (replacing the one
    before), so an append-only log of a site nobody watches stays bounded; True if it did.

    Call it only while no line is being appended, from the one process that owns the log:
    the next `append_line` then starts a new file. A reader that has the file open makes
    Windows refuse the rename; `replace` retries that for a moment.

    Raises:
        OSError: the rename failed (the log stays as it is; try again later).
    """
    try:
        if os.stat(path).st_size <= max_bytes:
            return False
    except FileNotFoundError:
        return False
    replace(path, previous_generation(path))
    fsync_dir(path.parent)
    return True
