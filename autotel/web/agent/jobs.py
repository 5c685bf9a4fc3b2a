"""The agent's only way to get work done: queue a job, wait for the runner to finish it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from watchfiles import watch

from autotel.errors import JobError
from autotel.spool.jobfile import FINAL_STATES
from autotel.spool.queue import Spool

# The folders are listed again at least this often, whatever the events say: covers a
# job that finished before the watch began, and a platform whose events are unreliable.
RECHECK_MS = 50
SETTLE_MS = 2  # quiet after a file arrives before waking: the runner moves one file


class JobTimeout(Exception):
    """The runner did not finish the job in time (or the agent is stopping)."""


class ClientGone(JobTimeout):
    """The client closed the connection while the agent waited for the job."""


def run_job(
    spool: Spool, kind: str, params: dict[str, Any], timeout_s: float, stopping: threading.Event,
    client_gone: Callable[[], bool] = lambda: False,
) -> dict[str, Any]:
    """Queue a job and return its final record.

    Wakes when a file arrives in `done/` or `failed/` (an export's answer no longer
    waits for a 20 ms poll), and at least every `RECHECK_MS`; the listing, not the
    event, decides. A stopping server ends the watch, so it never holds a request; a
    client that went away (`client_gone`) ends the wait too: the job stays queued.

    Raises:
        JobTimeout: not finished within `timeout_s`, or the agent is stopping.
        ClientGone: the client closed the connection meanwhile.
    """
    job_id = spool.submit(kind, params)
    deadline = time.monotonic() + timeout_s
    finished = [spool.paths.job_dir(state) for state in FINAL_STATES]
    for _ in watch(
        *finished,
        stop_event=stopping,
        debounce=RECHECK_MS,
        step=SETTLE_MS,
        rust_timeout=RECHECK_MS,
        yield_on_timeout=True,
        watch_filter=None,
        raise_interrupt=False,
    ):
        try:
            return spool.wait(job_id, 0)  # one look in done/ and failed/
        except JobError:
            if time.monotonic() >= deadline:
                break
            if client_gone():
                raise ClientGone(f"the client closed the connection while job {job_id} "
                                 f"({kind}) waited for the runner") from None
    raise JobTimeout(
        f"job {job_id} ({kind}) did not finish within {timeout_s:g} s; "
        "is the runner (or the watchdog) running?"
    )
