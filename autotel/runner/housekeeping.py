"""What the runner tidies between jobs, so the state directory stays bounded for ever.

Between jobs is the one moment nobody appends to `events.jsonl`: only the runner and
its worker write it, and the worker is idle. So the rotation needs no lock between
processes and never catches a line half-written.
"""

from __future__ import annotations

import logging

from autotel.config import Config
from autotel.fsutil import MB, rotate
from autotel.spool.retention import prune_finished

log = logging.getLogger("autotel.runner")


def tidy(config: Config) -> None:
    """Rotate the events once over their limit and prune old finished jobs.

    A failure (e.g. Windows refusing a rename while a reader holds the file) is logged
    and retried after the next job; it must never stop the runner.
    """
    limits = config.retention
    try:
        if rotate(config.state.events, int(limits.events_max_mb * MB)):
            log.info("events.jsonl passed %g MB: rotated to events.jsonl.1", limits.events_max_mb)
    except OSError as e:
        log.warning("could not rotate %s (will retry after the next job): %s",
                    config.state.events, e)
    try:
        removed = prune_finished(config.state, limits.keep_finished_jobs)
    except OSError as e:
        log.warning("could not prune old finished jobs (will retry after the next job): %s", e)
        return
    if removed:
        log.info("deleted %d old finished job file(s), keeping the newest %d of each outcome",
                 removed, limits.keep_finished_jobs)
