"""Progress events: one JSON line each in `state/events.jsonl`, which the portal streams.

`{"time", "job", "kind", "step", "pct", "msg"}` (+ `msg_en` when there is one). The
runner's own "step started" event also carries `attempt` (1, 2, ... with retries);
events a step reports about its progress do not.
Appends are single writes, so the runner and its worker never interleave lines.

The file is bounded: between jobs (when neither the runner nor its idle worker appends)
the runner rotates it to `events.jsonl.1` once it passes `retention.events_max_mb`
(`autotel.runner.housekeeping`). Readers therefore look at `.1` too where the latest
events may have just moved, and a tail follows the file across the rename.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from autotel.fsutil import append_line, previous_generation
from autotel.timeutil import now_iso


def emit(events_file: Path, job: dict[str, Any], step: str, pct: float, msg: str = "",
         durable: bool = True, **extra: Any) -> dict[str, Any]:
    """Append one event. The runner's own (a step starts, the job ends) are flushed to
    disk; a step's progress ticks are not (`durable=False`): after a power cut the bar
    may resume a few percent lower, which costs less than an fsync per tick."""
    event = {
        "time": now_iso(),
        "job": job.get("id"),
        "kind": job.get("kind"),
        "step": step,
        "pct": int(pct),
        "msg": msg,
        **extra,
    }
    append_line(events_file, json.dumps(event, ensure_ascii=False), durable)
    return event


def highest_pct(events_file: Path, job_id: str, window_bytes: int = 1024 * 1024) -> int:
    """The highest pct reported for `job_id` in the events' last `window_bytes`.

    Used when a job resumes after a crash: the progress its interrupted step had
    reported is only in the events, and the bar must not go back. The runner rotates
    the file on start, before resuming, so those events may be in `.1` by now.
    """
    events = parse_lines(EventTail(events_file).recent(window_bytes))
    return max((int(e.get("pct") or 0) for e in events if e.get("job") == job_id), default=0)


def read_events(events_file: Path) -> list[dict[str, Any]]:
    """Every event kept (the previous generation, then the current file), skipping a torn
    last line (the runner may be writing it)."""
    older = _complete_lines(_read_from(previous_generation(events_file), 0))
    return parse_lines(older + EventTail(events_file).read_new())


def parse_lines(data: bytes) -> list[dict[str, Any]]:
    """Events in complete lines of `data`; a line that is not a JSON object is skipped."""
    events = []
    for line in data.splitlines():
        try:
            event = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
        if isinstance(event, dict):
            events.append(event)
    return events


FileId = tuple[int, int]


class EventTail:
    """Reads complete lines appended to the events file since the last read.

    Follows a rotation: when the path names another file than last time, the rest of
    the file read so far (now `.1`) comes first, then the new file from its start, so
    no event is lost or repeated. A file rewritten shorter in place starts over.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.file_id: FileId | None = None

    def recent(self, window: int) -> bytes:
        """Complete lines within the last `window` bytes of the events (a line cut by the
        window is dropped); when the current file is shorter than `window`, the window
        reaches back into `.1`, where a rotation may just have moved the latest job."""
        try:
            stat = os.stat(self.path)
            size, self.file_id = stat.st_size, _file_id(stat)
        except FileNotFoundError:
            size, self.file_id = 0, None
        older = _last_lines(previous_generation(self.path), window - size) if size < window else b""
        start = max(0, size - window)
        self.offset = start
        data = self.read_new()
        return older + (data[data.find(b"\n") + 1:] if start > 0 else data)

    def read_new(self) -> bytes:
        """Complete new lines (up to the last newline); a torn last line waits for the next call."""
        try:
            # stat the open file: its size and identity belong together
            f = open(self.path, "rb")  # noqa: SIM115 (closed by the with below)
        except FileNotFoundError:
            return self._rest_of_rotated(None)
        with f:
            stat = os.fstat(f.fileno())
            rotated = self._rest_of_rotated(_file_id(stat))
            if stat.st_size < self.offset:  # truncated or rewritten in place: start over
                self.offset = 0
            f.seek(self.offset)
            data = f.read(stat.st_size - self.offset)
        complete = _complete_lines(data)
        self.offset += len(complete)
        return rotated + complete

    def _rest_of_rotated(self, current: FileId | None) -> bytes:
        """If the path names another file now, the unread rest of the one followed so far
        (it is `.1` after a rotation), and start the new file from its beginning."""
        if current == self.file_id:
            return b""
        previous = previous_generation(self.path)
        rest = b""
        if self.file_id is not None and _id_of(previous) == self.file_id:
            rest = _complete_lines(_read_from(previous, self.offset))
        self.file_id, self.offset = current, 0
        return rest


def _file_id(stat: os.stat_result) -> FileId:
    """Which file this is (inode, or file index on Windows): a rename keeps it."""
    return stat.st_dev, stat.st_ino


def _id_of(path: Path) -> FileId | None:
    try:
        return _file_id(os.stat(path))
    except FileNotFoundError:
        return None


def _last_lines(path: Path, window: int) -> bytes:
    """The complete lines within the last `window` bytes of `path`."""
    try:
        start = max(0, os.stat(path).st_size - window)
    except FileNotFoundError:
        return b""
    data = _read_from(path, start)
    return _complete_lines(data[data.find(b"\n") + 1:] if start > 0 else data)


def _read_from(path: Path, offset: int) -> bytes:
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read()
    except FileNotFoundError:
        return b""


def _complete_lines(data: bytes) -> bytes:
    return data[: data.rfind(b"\n") + 1]
