"""What the portal knows about updates: the installed and pending versions, and the
one way it starts an apply (a job for exactly the package the operator saw).

The portal never applies anything itself; it queues an `apply` job and the runner
does the work, so an apply survives a portal restart.
"""

from __future__ import annotations

import hmac
import logging
import threading
from typing import Any

from autotel.config import Config
from autotel.errors import AutotelError
from autotel.package.pending import PendingUpdate, read_pending
from autotel.spool.queue import Spool, read_job_record

log = logging.getLogger("autotel.portal")

class ApplyRefused(Exception):
    """The apply cannot start now (the portal answers 409 with this message)."""


class ConfirmationMissing(Exception):
    """An update is pending but the request does not say which one was confirmed (400)."""


def pending_update(config: Config) -> PendingUpdate | None:
    """The update waiting for the operator, or None; a damaged one is logged and hidden."""
    try:
        return read_pending(config.state)
    except AutotelError as e:
        log.warning("pending update unreadable: %s", e)
        return None


def active_apply_job(spool: Spool) -> str | None:
    """The id of an apply job that is queued or running, if any."""
    for state, names in (("queue", spool.queued_names()), ("running", spool.running_names())):
        for name in names:
            job = read_job_record(spool.paths.job_dir(state) / name, state)
            if job.get("kind") == "apply":
                return str(job["id"])
    return None


def update_status(config: Config) -> dict[str, Any]:
    pending = pending_update(config)
    return {
        "current_version": config.state.installed_version(),
        "pending_update": pending is not None,
        "pending_version": pending.version if pending else None,
        "notes": pending.notes if pending else None,
        "received_at": pending.received_at if pending else None,
        "sha256": pending.sha256 if pending else None,
        "apply_job": active_apply_job(Spool(config.state)),
    }


class ApplyGate:
    """Queues at most one apply at a time, and only for the package the operator confirmed."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.spool = Spool(config.state)
        self._lock = threading.Lock()

    def submit(self, confirmed: object) -> str:
        """Queue the apply job for the package whose SHA-256 is `confirmed`; return its id.

        Nothing pending is told first, whatever the request holds (DESIGN.md: 409). The
        hex digits may come in either case; anything else is simply not the pending package.

        Raises:
            ApplyRefused: nothing pending, another package pending, or an apply already active.
            ConfirmationMissing: `confirmed` is not a string.
        """
        with self._lock:
            pending = pending_update(self.config)
            if pending is None:
                raise ApplyRefused("no update is pending")
            if not isinstance(confirmed, str):
                raise ConfirmationMissing(
                    'expected {"sha256": "<64 hex digits>"} of the pending package')
            sha256 = confirmed.strip().lower()
            if not hmac.compare_digest(pending.sha256.encode(), sha256.encode()):
                raise ApplyRefused(
                    f"the pending update v{pending.version} is another package "
                    f"(sha256 {pending.sha256[:12]}…, confirmed {sha256[:12]}…); "
                    "reload and confirm again"
                )
            running = active_apply_job(self.spool)
            if running is not None:
                raise ApplyRefused(f"an update is already being applied (job {running})")
            job = self.spool.submit("apply", {"sha256": sha256})
        log.info("operator confirmed v%s (sha256 %s): apply job %s", pending.version, sha256, job)
        return job
