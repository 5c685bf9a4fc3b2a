"""The agent's only way to get work done: queue a job, wait for the runner to finish it."""

from __future__ import annotations

import threading
import time
from typing import Any

from autotel.errors import JobError
from autotel.spool.queue import Spool

WAIT_SLICE_S = 0.5


class JobTimeout(Exception):
    """The runner did not finish the job in time (or the agent is stopping)."""


def run_job(
    spool: Spool, kind: str, params: dict[str, Any], timeout_s: float, stopping: threading.Event
) -> dict[str, Any]:
    """Queue a job and return its final record.

    Waits in short slices so a stopping server is never held by a request.

    Raises:
        JobTimeout: not finished within `timeout_s`, or the agent is stopping.
    """
    job_id = spool.submit(kind, params)
    deadline = time.monotonic() + timeout_s
    while not stopping.is_set():
        left = deadline - time.monotonic()
        if left <= 0:
            break
        try:
            return spool.wait(job_id, min(WAIT_SLICE_S, left))
        except JobError:
            continue
    raise JobTimeout(
        f"job {job_id} ({kind}) did not finish within {timeout_s:g} s; "
        "is the runner (or the watchdog) running?"
    )
