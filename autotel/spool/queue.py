"""Disk operations on the spool: submit, claim, finish, find, list, wait."""

from __future__ import annotations

import contextlib
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
    JOB_SUFFIX,
    REASON_SUFFIX,
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
            with os.scandir(self.paths.job_dir(state)) as entries:
                return sorted(e.name for e in entries if is_job_name(e.name) and e.is_file())
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
        atomic_write_text(target.with_name(target.name + REASON_SUFFIX), reason + "\n")
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
        """The `limit` jobs whose files changed last, in the given folders, oldest first.

        By the time of the file, not its name: spool names sort by submission, but a file
        dropped by hand may be called anything. Only the files shown are read, however
        many finished jobs have piled up.
        """
        dated = sorted(item for state in states for item in self._dated(state))
        return [read_job_record(self.paths.job_dir(state) / name, state)
                for _, name, state in dated[-limit:]]

    def _dated(self, state: str) -> list[tuple[int, str, str]]:
        """(mtime, name, state) of each job file in a folder; one moving on meanwhile is left out."""
        dated = []
        for name in self._names(state):
            try:
                dated.append((os.stat(self.paths.job_dir(state) / name).st_mtime_ns, name, state))
            except FileNotFoundError:
                continue
        return dated

    def wait(self, ident: str, timeout_s: float, poll_s: float = 0.02) -> dict[str, Any]:
        """Block until the job is done or failed; return its record.

        `ident` is a job's id or file name (`x.json`, or `x` for a file dropped without
        the suffix).

        Raises:
            JobError: it did not finish within `timeout_s` (is the runner running?).
        """
        deadline = time.monotonic() + timeout_s
        names = (ident,) if ident.endswith(JOB_SUFFIX) else (ident + JOB_SUFFIX, ident)
        while True:
            for state in FINAL_STATES:
                for name in names:
                    path = self.paths.job_dir(state) / name
                    if path.is_file():
                        return read_job_record(path, state)
            if time.monotonic() >= deadline:
                raise JobError(
                    f"job {ident} did not finish within {timeout_s:g} s; is `autotel runner` "
                    "(or the watchdog) running?"
                )
            time.sleep(poll_s)


def read_job_record(path: Path, folder_state: str) -> dict[str, Any]:
    """Read a job for display; an unreadable file is shown as such, not raised.

    A file the runner rejected (with the reason beside it) shows that reason as its error,
    also when it is JSON (without a `kind`, say).
    """
    try:
        job = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(job, dict):
            raise ValueError("not an object")  # noqa: TRY004 (shown like unreadable JSON, below)
    except (OSError, ValueError) as e:
        job = {"error": f"unreadable job file: {e}"}
    reason = path.with_name(path.name + REASON_SUFFIX)
    with contextlib.suppress(OSError):
        job["error"] = reason.read_text(encoding="utf-8").strip()
    if not isinstance(job.get("kind"), str):
        job["kind"] = "?"
    job.setdefault("id", job_id(path.name))
    job["state"] = "queued" if folder_state == "queue" else folder_state
    return job
