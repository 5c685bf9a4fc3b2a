"""Disk operations on the spool: submit, claim, finish, find, list, wait."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from autotel.errors import JobError, StateError
from autotel.fsutil import atomic_write_bytes, atomic_write_text, fsync_dir, replace
from autotel.spool.jobfile import (
    FINAL_STATES,
    encode_job,
    is_job_name,
    job_id,
    new_job,
    new_job_name,
)
from autotel.state import JOB_STATES, StatePaths


class Spool:
    def __init__(self, paths: StatePaths) -> None:
        self.paths = paths

    def submit(self, kind: str, params: dict[str, Any] | None = None) -> str:
        """Queue a job atomically; return its id.

        Raises:
            StateError: the state directory does not exist (not a site, or not initialised).
        """
        if not self.paths.queue.is_dir():
            raise StateError(f"{self.paths.queue} does not exist; is this a site? run `autotel init`")
        job = new_job(kind, params)
        name = new_job_name(kind)
        job["id"] = job_id(name)
        self.paths.spool_tmp.mkdir(parents=True, exist_ok=True)
        staged = self.paths.spool_tmp / name
        atomic_write_bytes(staged, encode_job(job))
        replace(staged, self.paths.queue / name)
        fsync_dir(self.paths.queue)
        return str(job["id"])

    def queued_names(self) -> list[str]:
        return self._names("queue")

    def running_names(self) -> list[str]:
        return self._names("running")

    def _names(self, state: str) -> list[str]:
        try:
            return sorted(n for n in os.listdir(self.paths.job_dir(state)) if is_job_name(n))
        except FileNotFoundError:
            return []

    def claim(self, name: str) -> Path | None:
        """Move a queued job to `running/`; None if another process took it or it is still open."""
        target = self.paths.job_dir("running") / name
        try:
            os.rename(self.paths.queue / name, target)
        except (FileNotFoundError, PermissionError, FileExistsError):
            return None
        return target

    def save(self, path: Path, job: dict[str, Any]) -> None:
        atomic_write_bytes(path, encode_job(job))

    def finish(self, path: Path, job: dict[str, Any], state: str) -> Path:
        """Write the final record, then move it to `done/` or `failed/` under the same name."""
        assert state in FINAL_STATES
        self.save(path, job)
        target = self.paths.job_dir(state) / path.name
        replace(path, target)
        fsync_dir(target.parent)
        return target

    def reject(self, path: Path, reason: str) -> None:
        """Move an unreadable job file to `failed/` with the reason in a file beside it."""
        target = self.paths.job_dir("failed") / path.name
        atomic_write_text(target.with_name(target.name + ".reason.txt"), reason + "\n")
        replace(path, target)
        fsync_dir(target.parent)

    def find(self, ident: str) -> tuple[str, Path]:
        """Return (state, path) of the job with this id (or a unique prefix of it).

        Raises:
            JobError: no such job, or the prefix matches several.
        """
        matches = [
            (state, self.paths.job_dir(state) / name)
            for state in JOB_STATES
            for name in self._names(state)
            if job_id(name) == ident or job_id(name).startswith(ident)
        ]
        exact = [m for m in matches if job_id(m[1].name) == ident]
        if exact:
            return exact[0]
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise JobError(f"no job {ident!r}; see `autotel jobs ls`")
        raise JobError(f"{ident!r} matches {len(matches)} jobs; give more of the id")

    def load(self, ident: str) -> dict[str, Any]:
        state, path = self.find(ident)
        return read_job_record(path, state)

    def all_jobs(self) -> Iterator[dict[str, Any]]:
        for state in JOB_STATES:
            for name in self._names(state):
                yield read_job_record(self.paths.job_dir(state) / name, state)

    def recent(self, limit: int, states: tuple[str, ...] = JOB_STATES) -> list[dict[str, Any]]:
        """The newest `limit` jobs in the given folders, oldest first.

        Names sort by submission time, so only the files shown are read, however many
        finished jobs have piled up.
        """
        named = sorted((name, state) for state in states for name in self._names(state))
        return [read_job_record(self.paths.job_dir(state) / name, state)
                for name, state in named[-limit:]]

    def wait(self, ident: str, timeout_s: float, poll_s: float = 0.02) -> dict[str, Any]:
        """Block until the job is done or failed; return its record.

        Raises:
            JobError: it did not finish within `timeout_s` (is the runner running?).
        """
        deadline = time.monotonic() + timeout_s
        name = ident if ident.endswith(".json") else ident + ".json"
        while True:
            for state in FINAL_STATES:
                path = self.paths.job_dir(state) / name
                if path.exists():
                    return read_job_record(path, state)
            if time.monotonic() >= deadline:
                raise JobError(
                    f"job {ident} did not finish within {timeout_s:g} s; is `autotel runner` "
                    "(or the watchdog) running?"
                )
            time.sleep(poll_s)


def read_job_record(path: Path, folder_state: str) -> dict[str, Any]:
    """Read a job for display; an unreadable file is shown as such, not raised."""
    try:
        job = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(job, dict):
            raise ValueError("not an object")  # noqa: TRY004 (shown like unreadable JSON, below)
    except (OSError, ValueError) as e:
        reason = path.with_name(path.name + ".reason.txt")
        why = reason.read_text(encoding="utf-8").strip() if reason.exists() else None
        job = {"kind": "?", "state": folder_state, "error": why or f"unreadable job file: {e}"}
    job.setdefault("id", job_id(path.name))
    job["state"] = "queued" if folder_state == "queue" else folder_state
    return job
