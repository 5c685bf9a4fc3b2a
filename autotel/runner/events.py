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
