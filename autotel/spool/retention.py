"""Pruning finished jobs: a site that exports every 15 minutes finishes 35,000 a year.

Only `done/` and `failed/` are pruned, never `queue/` or `running/`. Names sort by
submission time (`new_job_name`), so the oldest go first without reading any file.
The newest apply job stays whatever its age: the portal replays the latest apply's
events on connect and reads its job file to say which step failed.
"""

from __future__ import annotations

import contextlib
import logging
import os

from autotel.spool.jobfile import FINAL_STATES, REASON_SUFFIX, is_job_name, job_id
from autotel.state import StatePaths

log = logging.getLogger("autotel.spool")

KEPT_KIND = "apply"


def prune_finished(paths: StatePaths, keep: int) -> int:
    """Delete all but the newest `keep` jobs in each of `done/` and `failed/`; return how many.

    A file Windows will not delete now (a reader has it open) is left for the next time.
    """
    return sum(_prune_folder(paths, state, keep) for state in FINAL_STATES)


def _prune_folder(paths: StatePaths, state: str, keep: int) -> int:
    folder = paths.job_dir(state)
    try:
        names = sorted(n for n in os.listdir(folder) if is_job_name(n))
    except FileNotFoundError:
        return 0
    doomed = names[:-keep] if len(names) > keep else []
    newest_kept = next((n for n in reversed(names) if kind_of(n) == KEPT_KIND), None)
    removed = 0
    for name in doomed:
        if name == newest_kept:
            continue
        try:
            os.unlink(folder / name)
        except FileNotFoundError:
            continue
        except OSError as e:
            log.warning("could not delete the old job file %s (will retry later): %s", name, e)
            continue
        with contextlib.suppress(OSError):
            os.unlink(folder / (name + REASON_SUFFIX))
        removed += 1
    return removed


def kind_of(name: str) -> str | None:
    """The kind in a spool name `<time>-<random>-<kind>.json`; None for other names."""
    parts = job_id(name).split("-", 2)
    return parts[2] if len(parts) == 3 else None
