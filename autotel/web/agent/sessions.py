"""`state/sessions.jsonl`: one line per export served and per update received."""

from __future__ import annotations

import json
from pathlib import Path

from autotel.fsutil import append_line
from autotel.timeutil import now_iso


def record_session(
    log_file: Path,
    peer_ip: str,
    action: str,
    *,
    records: int | None = None,
    version: str | None = None,
    status: str,
) -> None:
    line = {
        "time": now_iso(),
        "peer_ip": peer_ip,
        "action": action,
        "records": records,
        "version": version,
        "status": status,
    }
    append_line(log_file, json.dumps(line, ensure_ascii=False))
