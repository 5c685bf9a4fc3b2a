"""Progress events: one JSON line each in `state/events.jsonl`, which the portal streams.

`{"time", "job", "kind", "step", "pct", "msg"}` (+ `msg_en` when there is one). The
runner's own "step started" event also carries `attempt` (1, 2, ... with retries);
events a step reports about its progress do not.
Appends are single writes, so the runner and its worker never interleave lines.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from autotel.fsutil import append_line
from autotel.timeutil import now_iso


def emit(events_file: Path, job: dict[str, Any], step: str, pct: float, msg: str = "",
         **extra: Any) -> dict[str, Any]:
    event = {
        "time": now_iso(),
        "job": job.get("id"),
        "kind": job.get("kind"),
        "step": step,
        "pct": int(pct),
        "msg": msg,
        **extra,
    }
    append_line(events_file, json.dumps(event, ensure_ascii=False))
    return event


def highest_pct(events_file: Path, job_id: str, window_bytes: int = 1024 * 1024) -> int:
    """The highest pct reported for `job_id` in the file's last `window_bytes`.

    Used when a job resumes after a crash: the progress its interrupted step had
    reported is only in the events, and the bar must not go back.
    """
    events = parse_lines(EventTail(events_file).recent(window_bytes))
    return max((int(e.get("pct") or 0) for e in events if e.get("job") == job_id), default=0)


def read_events(events_file: Path) -> list[dict[str, Any]]:
    """Every event, skipping a torn last line (the runner may be writing it)."""
    return parse_lines(EventTail(events_file).read_new())


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


class EventTail:
    """Reads complete lines appended to the events file since the last read."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0

    def recent(self, window: int) -> bytes:
        """Complete lines within the last `window` bytes (a line cut by the window is dropped)."""
        try:
            start = max(0, os.stat(self.path).st_size - window)
        except FileNotFoundError:
            return b""
        self.offset = start
        data = self.read_new()
        return data[data.find(b"\n") + 1:] if start > 0 else data

    def read_new(self) -> bytes:
        """Complete new lines (up to the last newline); a torn last line waits for the next call."""
        try:
            size = os.stat(self.path).st_size
        except FileNotFoundError:
            size = 0
        if size < self.offset:  # truncated or replaced: start over
            self.offset = 0
        if size == self.offset:
            return b""
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            data = f.read(size - self.offset)
        complete = data[: data.rfind(b"\n") + 1]
        self.offset += len(complete)
        return complete
