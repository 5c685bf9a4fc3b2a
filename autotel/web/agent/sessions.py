"""`state/sessions.jsonl`: one line per export served and per update received.

Bounded: once over `retention.sessions_max_mb` it is rotated to `sessions.jsonl.1`.
The agent is the only writer, so a lock between its threads is enough for a line
never to be appended while the file is being renamed.
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path

from autotel.fsutil import MB, append_line, rotate
from autotel.timeutil import now_iso

log = logging.getLogger("autotel.agent")

_writing = threading.Lock()


def record_session(
    log_file: Path,
    peer_ip: str,
    action: str,
    *,
    records: int | None = None,
    version: str | None = None,
    status: str,
    max_mb: float,
    reset: str | None = None,
    resumed_from: int | None = None,
) -> None:
    """Append one line; for exports, `reset` says why every row was exported and
    `resumed_from` at which byte a download the link had cut went on."""
    line: dict[str, object] = {
        "time": now_iso(),
        "peer_ip": peer_ip,
        "action": action,
        "records": records,
        "version": version,
        "status": status,
    }
    if reset:
        line["reset"] = reset
    if resumed_from:
        line["resumed_from"] = resumed_from
    with _writing:
        append_line(log_file, json.dumps(line, ensure_ascii=False))
        try:
            rotate(log_file, int(max_mb * MB))
        except OSError as e:  # the line is written; the next one tries again
            log.warning("could not rotate %s: %s", log_file, e)
