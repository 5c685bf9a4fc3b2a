"""Running one claimed job through its steps, recording each step before and after.

A job file in `running/` is the record of where a job is. Every step's state is
written (atomically) before the step starts and after it ends, so a runner killed
at any point resumes at the first step not marked `done`, and never runs a finished
step twice. When a step fails for good, the kind's `on_failure` steps run (they are
recorded and resumed the same way), then the job moves to `failed/`. A job whose
record is already final was interrupted while being moved: it is only moved on.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from autotel.config import Config
from autotel.errors import AutotelError, JobError
from autotel.runner.events import emit, highest_pct
from autotel.runner.kinds import JobKind, StepPolicy, load_kind
from autotel.runner.progress import step_span
from autotel.runner.worker import StepWorker
from autotel.spool.jobfile import FINAL_STATES, failed_steps
from autotel.spool.queue import Spool
from autotel.timeutil import now_iso

log = logging.getLogger("autotel.runner")


class JobExecutor:
    def __init__(self, config: Config, spool: Spool, worker: StepWorker, known_steps: set[str]) -> None:
        self.config = config
        self.spool = spool
        self.worker = worker
        self.known_steps = known_steps

    def execute(self, path: Path, job: dict[str, Any]) -> str:
        """Run (or resume) the job at `path` in `running/`; return its final state."""
        if job.get("state") in FINAL_STATES:
            return self._move_on(path, job)
        try:
            kind = load_kind(job["kind"], self.config.install_path, self.known_steps)
        except JobError as e:
            return self._fail(path, job, str(e))
        if any(r.get("state") == "running" for r in job.get("steps", [])):
            # resumed after a crash: the interrupted step's progress is only in the events
            job["pct"] = max(job.get("pct", 0), highest_pct(self.config.state.events, job["id"]))
        if job.get("state") != "failing":
            job["state"] = "running"
        job.setdefault("started", now_iso())
        self._plan(job, "main", kind.steps)  # saved with the first step's start, below
        if job["state"] == "running":
            error = self._run_phase(path, job, kind, "main", kind.steps)
            if error is None:
                return self._succeed(path, job, kind)
            job["state"] = "failing"
            job["error"] = error
            job["error_type"] = _last_error_type(job)
            self._plan(job, "on_failure", kind.on_failure)
            self.spool.save(path, job)
        self._run_phase(path, job, kind, "on_failure", kind.on_failure)
        return self._fail(path, job, str(job["error"]))

    def _plan(self, job: dict[str, Any], phase: str, policies: list[StepPolicy]) -> None:
        """Add a record for each step of `phase` not yet recorded (first run of the job)."""
        if any(r.get("phase", "main") == phase for r in job["steps"]):
            return
        for policy in policies:
            job["steps"].append({"name": policy.name, "phase": phase, "state": "pending",
                                 "started": None, "finished": None, "error": None, "result": None})

    def _run_phase(self, path: Path, job: dict[str, Any], kind: JobKind, phase: str,
                   policies: list[StepPolicy]) -> str | None:
        records = [r for r in job["steps"] if r.get("phase", "main") == phase]
        for index, (policy, record) in enumerate(zip(policies, records, strict=True)):
            if record["state"] == "done":
                continue
            error = self._run_step(path, job, policy, record, index, len(policies), phase)
            if error is not None:
                return error
        return None

    def _run_step(self, path: Path, job: dict[str, Any], policy: StepPolicy,
                  record: dict[str, Any], index: int, total: int, phase: str) -> str | None:
        low, high = step_span(index, total) if phase == "main" else (self._last_pct(job),) * 2
        low = max(low, job.get("pct", 0))
        high = max(low, high)
        timeout = policy.timeout_s or self.config.runner.default_step_timeout_s
        for attempt in range(policy.retries + 1):
            record.update(state="running", started=now_iso(), finished=None, error=None,
                          attempt=attempt + 1)
            self.spool.save(path, job)
            self._emit(job, policy.name, low, policy.msg, attempt=attempt + 1,
                       **({"msg_en": policy.msg_en} if policy.msg_en else {}))
            outcome = self._call(job, policy, low, high, timeout)
            job["pct"] = max(job["pct"], outcome.get("pct", 0))
            record["finished"] = now_iso()
            if outcome["ok"]:
                record.update(state="done", result=outcome.get("result") or {})
                self.spool.save(path, job)
                return None
            record.update(state="failed", error=outcome["error"], error_type=outcome.get("type"))
            self.spool.save(path, job)
            log.warning("job %s step %s attempt %d failed: %s", job["id"], policy.name,
                        attempt + 1, outcome["error"])
            if attempt < policy.retries:
                time.sleep(policy.retry_delay_s)
        return f"step {policy.name} failed: {record['error']}"

    def _call(self, job: dict[str, Any], policy: StepPolicy, low: float, high: float,
              timeout: float) -> dict[str, Any]:
        """Run one attempt in the worker; the step sees the kind's fixed params over the job's."""
        seen = {**job, "params": {**(job.get("params") or {}), **policy.params}}
        request = {"step": policy.name, "job": seen, "pct_from": low, "pct_to": high}
        try:
            return self.worker.run(request, timeout)
        except AutotelError as e:
            return {"ok": False, "error": str(e), "type": type(e).__name__}

    def _last_pct(self, job: dict[str, Any]) -> float:
        """Where the bar stands: the finished share of the main steps, or more if reported."""
        done = [r for r in job["steps"] if r.get("phase", "main") == "main" and r["state"] == "done"]
        main = [r for r in job["steps"] if r.get("phase", "main") == "main"]
        share = 100.0 * len(done) / len(main) if main else 0.0
        return max(share, float(job.get("pct", 0)))

    def _emit(self, job: dict[str, Any], step: str, pct: float, msg: str, **extra: Any) -> None:
        """Every event of a job goes through here, so its pct never goes back (DESIGN.md)."""
        job["pct"] = max(pct, job.get("pct", 0))
        emit(self.config.state.events, job, step, job["pct"], msg, **extra)

    def _succeed(self, path: Path, job: dict[str, Any], kind: JobKind) -> str:
        job["result"] = merged_results(job)
        job.update(state="done", error=None, finished=now_iso(), pct=100)
        self.spool.finish(path, job, "done")
        self._emit(job, "done", 100, kind.done_msg, msg_en=kind.done_msg_en)
        return "done"

    def _move_on(self, path: Path, job: dict[str, Any]) -> str:
        """Finish the move a crash interrupted; the steps are not run again."""
        state = str(job["state"])
        self.spool.finish(path, job, state)
        self._emit(job, state, 100 if state == "done" else self._last_pct(job),
                   str(job.get("error") or ""))
        return state

    def _fail(self, path: Path, job: dict[str, Any], error: str) -> str:
        job["result"] = merged_results(job)
        job.update(state="failed", error=error, finished=now_iso())
        self.spool.finish(path, job, "failed")
        self._emit(job, "failed", self._last_pct(job), error)
        return "failed"


def _last_error_type(job: dict[str, Any]) -> str | None:
    """The exception class name of the step that failed, so callers can map it (e.g. to HTTP)."""
    failed = failed_steps(job)
    return failed[-1].get("error_type") if failed else None


def merged_results(job: dict[str, Any]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for record in job.get("steps", []):
        if record.get("state") == "done" and isinstance(record.get("result"), dict):
            merged.update(record["result"])
    return merged
