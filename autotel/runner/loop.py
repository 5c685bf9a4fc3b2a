"""`autotel runner`: one process per site that drains the job queue.

File events are hints, a rescan is the truth: the queue is listed on start and on
every wake (an event or the rescan timeout), so a missed or doubled event changes
nothing. One runner per state directory, enforced by a lock the OS frees if the
process dies; so a job found in `running/` at start is an orphan of a crash and
is resumed.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

from watchfiles import watch

from autotel.config import Config
from autotel.errors import JobError
from autotel.lockfile import ProcessLock
from autotel.runner.execute import JobExecutor
from autotel.runner.housekeeping import tidy
from autotel.runner.worker import StepWorker
from autotel.spool.jobfile import parse_job, start_over
from autotel.spool.queue import Spool
from autotel.steps import load_steps

log = logging.getLogger("autotel.runner")


class Runner:
    def __init__(self, config: Config, stop: threading.Event | None = None) -> None:
        self.config = config
        self.stop = stop or threading.Event()
        self.spool = Spool(config.state)
        self.lock = ProcessLock(config.state.run / "runner.lock", "runner")
        self.worker = StepWorker(config.config_path.resolve())
        self.executor = JobExecutor(config, self.spool, self.worker, set(load_steps()))

    def run_forever(self) -> None:
        self.config.state.create()
        self.lock.acquire()
        try:
            self.worker.start()
            log.info("runner started for %s", self.config.state.root)
            tidy(self.config)
            self.resume_orphans()
            self.drain()
            for _ in watch(self.config.state.queue, stop_event=self.stop, debounce=20, step=2,
                           rust_timeout=self.config.runner.rescan_ms, yield_on_timeout=True,
                           watch_filter=None, raise_interrupt=False):
                self.drain()
        finally:
            self.worker.stop()
            self.lock.release()
            log.info("runner stopped")

    def resume_orphans(self) -> None:
        for name in self.spool.running_names():
            if self.stop.is_set():
                return
            path = self.config.state.job_dir("running") / name
            log.info("resuming %s, left running by a runner that stopped", name)
            self._execute_safely(path, resumed=True)

    def drain(self) -> None:
        """Run every job in the queue, oldest first, until none is left that can be taken now."""
        while not self.stop.is_set():
            ran = False
            for name in self.spool.queued_names():
                if self.stop.is_set():
                    return
                if self._unsettled(self.config.state.queue / name):
                    continue
                claimed = self.spool.claim(name)
                if claimed is not None:
                    self._execute_safely(claimed, resumed=False)
                    ran = True
            if not ran:
                return

    def _unsettled(self, path: Path) -> bool:
        """True for a file that does not parse yet but was written moments ago."""
        try:
            raw = path.read_bytes()
            parse_job(raw, path.name)
            return False
        except FileNotFoundError:
            return False
        except (OSError, JobError):
            try:
                return time.time() - os.stat(path).st_mtime < self.config.runner.settle_s
            except FileNotFoundError:
                return False

    def _execute(self, path: Path, *, resumed: bool) -> None:
        """Run one job in `running/`; whatever goes wrong, the runner goes on to the next.

        A job taken from the queue starts at its first step (`start_over`), also one
        claimed by a runner that stopped before recording anything; one found in
        `running/` at start resumes where it stopped.
        """
        try:
            job = parse_job(path.read_bytes(), path.name)
        except JobError as e:
            log.warning("%s", e)
            self.spool.reject(path, str(e))
            return
        if not resumed or job["state"] == "queued":
            job = start_over(job)
        state = self.executor.execute(path, job)
        log.info("job %s (%s) %s", job["id"], job["kind"], state)

    def _execute_safely(self, path: Path, *, resumed: bool) -> None:
        try:
            self._execute(path, resumed=resumed)
        except Exception:  # e.g. a full disk: the file stays in running/ for the next start
            log.exception("%s stopped by an unexpected error; it resumes when the runner restarts",
                          path.name)
        tidy(self.config)
