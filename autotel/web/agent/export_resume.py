"""Resuming an export download the link cut: `Range` and `If-Range` on `GET /data/export`.

An archive stays in `state/exports/` until a newer one is served, so an admin whose
download broke can ask for the rest of that same archive instead of a new export of
everything since its cursor. Over a link that drops every hour, a backlog that takes
longer than an hour to download would otherwise never arrive, and its readings would
keep piling up on the site.

Every archive is answered with an `ETag` naming it: `"<export job id>.<archive sha256>"`.
The admin asks again with `Range: bytes=<bytes it has>-` and `If-Range: <that ETag>`. The
rest is answered (206) only if that job is a finished export of the same request (the
same cursor or since), its archive is still whole on disk and the range starts inside
it; anything else is an ordinary export (200), as HTTP lets a server ignore a range.
"""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autotel.spool.jobfile import JOB_SUFFIX
from autotel.spool.queue import Spool, read_job_record
from autotel.web.agent.outcomes import export_result

_ETAG = re.compile(r'^"([0-9A-Za-z_-][0-9A-Za-z_.-]{0,119})\.([0-9a-f]{64})"$')
_RANGE = re.compile(r"^bytes=(\d{1,15})-$")


@dataclass(frozen=True)
class Resumed:
    """The rest of an earlier answer: its export result, from byte `offset` on."""

    offset: int
    result: dict[str, Any]
    job_id: str


def etag(job_id: str, result: dict[str, Any]) -> str:
    return f'"{job_id}.{result["sha256"]}"'


def resumed(spool: Spool, params: dict[str, Any], range_header: str | None,
            if_range: str | None) -> Resumed | None:
    """The earlier answer the request's `Range` continues, or None for a new export."""
    wanted = _ETAG.match((if_range or "").strip())
    span = _RANGE.match((range_header or "").strip())
    if wanted is None or span is None:
        return None
    job_id, sha256 = wanted.groups()
    path = spool.paths.job_dir("done") / (job_id + JOB_SUFFIX)  # the id names one file there
    if not path.is_file():
        return None
    job = read_job_record(path, "done")
    result = export_result(job)
    if job["kind"] != "export" or job.get("params") != params or result is None:
        return None
    offset = int(span.group(1))
    if not hmac.compare_digest(result["sha256"], sha256) or not 0 < offset < result["size"]:
        return None
    if not _whole(spool.paths.exports / result["archive"], result["size"]):
        return None  # superseded (pruned) since
    return Resumed(offset, result, job_id)


def _whole(archive: Path, size: int) -> bool:
    try:
        return archive.stat().st_size == size
    except OSError:
        return False
