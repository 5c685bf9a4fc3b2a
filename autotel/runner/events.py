"""Progress events: one JSON line each in `state/events.jsonl`, which the portal streams.

`{"time", "job", "kind", "step", "pct", "msg"}` (+ `msg_en` when there is one). The
runner's own "step started" event also carries `attempt` (1, 2, ... with retries);
events a step reports about its progress do not.
Appends are single writes, so the runner and its worker never interleave lines.
"""

from __future__ import annotations

import json
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
    try:
        with open(events_file, "rb") as f:
            f.seek(max(0, f.seek(0, 2) - window_bytes))
            tail = f.read()
    except FileNotFoundError:
        return 0
    highest = 0
    for line in tail.splitlines():
        try:
            event = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
        if isinstance(event, dict) and event.get("job") == job_id:
            highest = max(highest, int(event.get("pct") or 0))
    return highest


def read_events(events_file: Path) -> list[dict[str, Any]]:
    """Every event, skipping a torn last line (the runner may be writing it)."""
    events = []
    try:
        text = events_file.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    for line in text.splitlines():
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return events
