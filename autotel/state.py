"""The layout of a site's state directory, in one place.

Everything autotel writes at run time lives under here, never elsewhere in the
install directory, so an update cannot clobber it and a backup need not hold it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

JOB_STATES = ("queue", "running", "done", "failed")


@dataclass(frozen=True)
class StatePaths:
    root: Path

    @property
    def jobs(self) -> Path:
        return self.root / "jobs"

    def job_dir(self, state: str) -> Path:
        return self.jobs / state

    @property
    def queue(self) -> Path:
        return self.job_dir("queue")

    @property
    def spool_tmp(self) -> Path:
        return self.jobs / "tmp"

    @property
    def events(self) -> Path:
        return self.root / "events.jsonl"

    @property
    def pending(self) -> Path:
        return self.root / "pending_update"

    @property
    def backups(self) -> Path:
        return self.root / "backups"

    @property
    def exports(self) -> Path:
        return self.root / "exports"

    @property
    def incoming(self) -> Path:
        """Uploads being received, before a `receive` job checks them."""
        return self.root / "incoming"

    @property
    def staging(self) -> Path:
        """Unpacked files of an apply, on the install directory's file system."""
        return self.root / "staging"

    @property
    def version_file(self) -> Path:
        return self.root / "version.txt"

    @property
    def last_sync(self) -> Path:
        return self.root / "last_sync.txt"

    @property
    def restart_flag(self) -> Path:
        return self.root / "restart.flag"

    @property
    def tls(self) -> Path:
        return self.root / "tls"

    @property
    def sessions(self) -> Path:
        return self.root / "sessions.jsonl"

    @property
    def pgdata(self) -> Path:
        return self.root / "pgdata"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def run(self) -> Path:
        """Lock and pid files of the running services."""
        return self.root / "run"

    def create(self) -> None:
        for state in JOB_STATES:
            self.job_dir(state).mkdir(parents=True, exist_ok=True)
        for folder in (self.spool_tmp, self.pending, self.backups, self.exports, self.incoming,
                       self.staging, self.tls, self.logs, self.run):
            folder.mkdir(parents=True, exist_ok=True)

    def installed_version(self) -> str:
        try:
            return self.version_file.read_text(encoding="utf-8").strip() or "0.0.0"
        except FileNotFoundError:
            return "0.0.0"
