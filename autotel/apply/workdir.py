"""The apply job's work folder `state/staging/apply-<job>/` and the journal in it.

The folder is on the install directory's file system (checked), so staged files
move into place with a rename. It outlives a crash and is removed when the job
ends either way (`restart` or `rollback`).

A waiting update is unpacked ahead into a folder of the same shape,
`state/staging/pending-<sha256 prefix>/` (the `stage` job, `autotel.apply.unpack`),
whose journal says `staged` once every file in it is checked and durable.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autotel.errors import StateError
from autotel.fsutil import atomic_write_json
from autotel.state import StatePaths

PREFIX = "apply-"
PENDING_PREFIX = "pending-"
PHASES = ("staging", "staged", "replacing", "replaced")


@dataclass(frozen=True)
class WorkDir:
    root: Path

    @classmethod
    def of(cls, state: StatePaths, job_id: str) -> WorkDir:
        return cls(state.staging / f"{PREFIX}{job_id}")

    @classmethod
    def of_pending(cls, state: StatePaths, sha256: str) -> WorkDir:
        """Where the waiting package with this SHA-256 is unpacked ahead of its apply.

        16 hex digits name it (Windows paths stay short); a folder of another package
        that shares them is harmless, as every adopted file is checked by its hash.
        """
        return cls(state.staging / f"{PENDING_PREFIX}{sha256[:16]}")

    @property
    def files(self) -> Path:
        """Staged new files, at their path relative to the install directory."""
        return self.root / "files"

    @property
    def replaced(self) -> Path:
        """Second links to the files being replaced, freed together after the patch."""
        return self.root / "replaced"

    @property
    def aside(self) -> Path:
        """Old files Windows would not let a new one replace (a program runs from them)."""
        return self.root / "aside"

    @property
    def journal(self) -> Path:
        return self.root / "journal.json"

    @property
    def backup_record(self) -> Path:
        return self.root / "backup.json"

    def phase(self) -> str | None:
        """How far the patch got: one of PHASES, or None before it began."""
        record = self._read(self.journal)
        return str(record["phase"]) if record else None

    def is_staged(self) -> bool:
        """Whether every file is staged, checked and durable (an unreadable journal: not)."""
        try:
            return self.phase() == "staged"
        except StateError:
            return False

    def set_phase(self, phase: str) -> None:
        assert phase in PHASES
        self.root.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.journal, {"phase": phase})

    def read_backup(self) -> dict[str, Any] | None:
        return self._read(self.backup_record)

    def write_backup(self, record: dict[str, Any]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.backup_record, record)

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def check_same_disk(self, install_dir: Path) -> None:
        """Raises: StateError when staged files could not be renamed into the install directory."""
        self.root.mkdir(parents=True, exist_ok=True)
        if os.stat(self.root).st_dev != os.stat(install_dir).st_dev:
            raise StateError(
                f"the staging folder {self.root} is on another disk than the install directory "
                f"{install_dir}, so files cannot be replaced atomically; set state_dir to a folder "
                "on the same disk"
            )

    @staticmethod
    def _read(path: Path) -> dict[str, Any] | None:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            raise StateError(
                f"{path}: unreadable ({e}); the apply cannot tell where it stopped"
            ) from None
        return data if isinstance(data, dict) else None


def remove_stale(state: StatePaths, *keep: WorkDir,
                 prefixes: tuple[str, ...] = (PREFIX, PENDING_PREFIX)) -> None:
    """Remove the work folders of earlier apply jobs and of updates no longer waiting,
    all but `keep` (one runner runs one job at a time, so no other job uses them)."""
    if not state.staging.is_dir():
        return
    kept = {work.root for work in keep}
    for folder in state.staging.iterdir():
        if folder.name.startswith(prefixes) and folder not in kept:
            shutil.rmtree(folder, ignore_errors=True)
