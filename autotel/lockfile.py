"""An exclusive, portable lock on a file, held for as long as a process runs.

The OS releases it when the process dies (even by `kill -9` or a power cut), so a
stale lock file never blocks a restart. `fcntl.flock` on POSIX, `msvcrt.locking`
on Windows.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Self

from autotel.errors import StateError

if sys.platform == "win32":
    import msvcrt

    def _try_lock(fd: int) -> bool:
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

    def _unlock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)  # msvcrt locks from the current position
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False
        return True

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)


class ProcessLock:
    """`with ProcessLock(path, "runner"):` — or `acquire()`/`release()` by hand."""

    def __init__(self, path: Path, what: str) -> None:
        self.path = Path(path)
        self.what = what
        self._fd: int | None = None

    def acquire(self) -> None:
        """Raises: StateError when another process holds the lock."""
        if not self._try_acquire():
            raise StateError(
                f"another {self.what} is already running for this site (lock {self.path} is held); "
                "stop it first"
            )

    def acquire_waiting(self, timeout_s: float, poll_s: float = 0.05) -> None:
        """Wait up to `timeout_s` for the lock, for short critical sections shared by processes.

        Polls, because neither `flock` nor `msvcrt.locking` can block with a timeout.

        Raises:
            StateError: still held elsewhere after `timeout_s`.
        """
        deadline = time.monotonic() + timeout_s
        while not self._try_acquire():
            if time.monotonic() >= deadline:
                raise StateError(
                    f"waited {timeout_s:g} s for the {self.what} lock {self.path}, still held by "
                    "another process; if that process hangs, stop it and retry"
                )
            time.sleep(poll_s)

    def _try_acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        if not _try_lock(fd):
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):  # closing the handle frees it anyway
                _unlock(self._fd)
            os.close(self._fd)
            self._fd = None

    def is_held_elsewhere(self) -> bool:
        """True if some other process holds the lock right now (used by `status`)."""
        if not self.path.exists():
            return False
        fd = os.open(self.path, os.O_RDWR)
        try:
            if not _try_lock(fd):
                return True
            _unlock(fd)  # Windows wants a lock released before its handle is closed
            return False
        finally:
            os.close(fd)

    def __enter__(self) -> Self:
        self.acquire()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
