"""A service's console output, copied by the watchdog into its size-bounded console log.

A child that wrote straight into `state/logs/<name>.console.log` held the file open
for as long as it ran, and Windows cannot rename an open file: the log could only be
rotated when the service restarted, so a collector printing a line a second for
months of uptime filled the disk. So the child writes into a pipe, and one thread of
the watchdog per child appends what arrives to the log, renaming it to `<name>.1`
whenever it passes its limit: the watchdog is then the only process holding it.

The pipe ends with the child (or with the last process that inherited it); the
thread then closes both ends of its work, so restarts leave no handle behind.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from pathlib import Path
from typing import IO

from autotel.fsutil import rotate

log = logging.getLogger("autotel.watchdog")

READ_BYTES = 64 * 1024
# How long a reaped service's last output may take to reach its log before the exit
# reason is read from it (a grandchild that keeps the pipe open must not stall the tick).
DRAIN_WAIT_S = 2.0


class ConsolePump:
    """Copies one child's output pipe into its console log until the pipe closes."""

    def __init__(self, pipe: IO[bytes], path: Path, max_bytes: int) -> None:
        self._pipe = pipe
        self._path = path
        self._max_bytes = max_bytes
        self._thread = threading.Thread(target=self._run, name=f"console {path.name}",
                                        daemon=True)
        self._thread.start()

    def drain(self, timeout_s: float = DRAIN_WAIT_S) -> None:
        """Wait (bounded) until everything the ended child printed is in the log."""
        self._thread.join(timeout_s)

    def _run(self) -> None:
        try:
            with self._pipe:
                self._copy()
        except OSError as e:  # a full disk: the child must not block on a pipe nobody reads
            log.error("cannot write %s (%s); discarding that service's output", self._path, e)
            self._discard()

    def _copy(self) -> None:
        out = open_console_log(self._path, self._max_bytes)
        line_ended = True
        try:
            while data := os.read(self._pipe.fileno(), READ_BYTES):
                # rotated before a write, never after: the log must end with the last
                # thing printed, which is the exit reason the supervisor reads from it
                if self._due(out.tell(), line_ended):
                    out.close()
                    out = open_console_log(self._path, self._max_bytes)
                out.write(data)
                out.flush()
                line_ended = data.endswith(b"\n")
        finally:
            out.close()

    def _due(self, size: int, line_ended: bool) -> bool:
        """Over the limit, and between two lines: an unbuffered child prints a line in
        pieces, and one cut across the two files would lose its start from the reason.
        A child that never ends its line is cut anyway at twice the limit."""
        return size > self._max_bytes and (line_ended or size > 2 * self._max_bytes)

    def _discard(self) -> None:
        with contextlib.suppress(OSError, ValueError), self._pipe:
            while os.read(self._pipe.fileno(), READ_BYTES):
                pass


def open_console_log(path: Path, max_bytes: int) -> IO[bytes]:
    """The log to append to, first renamed to `<name>.1` if it is over `max_bytes`.

    If the rename is refused (on Windows, a reader has the file open this instant), the
    output goes on into the same file and the rename is tried again at the next write
    past the limit.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError):
        rotate(path, max_bytes)
    return open(path, "ab")
