"""The last act of an apply: record the new version, ask for a restart, forget the package.

Used by the `restart` step, and by `rollback` when the update can no longer be
undone (its migrations are committed) and is completed instead. Each write is
atomic and repeating them is harmless, so a crash anywhere here is resumed.
"""

from __future__ import annotations

from autotel.apply.faults import fault_point
from autotel.fsutil import atomic_write_json, atomic_write_text
from autotel.package.pending import clear_pending, read_pending
from autotel.state import StatePaths
from autotel.timeutil import now_iso


def finish_install(state: StatePaths, job_id: str, version: str, package_sha256: str) -> None:
    """version.txt, then restart.flag (the watchdog restarts the services), then clear pending.

    Clearing the package is the last act, so when it is gone and the version is
    recorded a re-run (after a crash) has nothing left to do, and does not ask the
    watchdog for a second restart.
    """
    if is_finished(state, version, package_sha256):
        return
    set_version(state, version)
    fault_point(state, "restart:version")
    atomic_write_json(state.restart_flag, {"job": job_id, "version": version, "time": now_iso()})
    fault_point(state, "restart:flag")
    clear_pending(state, only_sha256=package_sha256)


def is_finished(state: StatePaths, version: str, package_sha256: str) -> bool:
    pending = read_pending(state)
    still_pending = pending is not None and pending.sha256 == package_sha256
    return state.installed_version() == version and not still_pending


def set_version(state: StatePaths, version: str) -> None:
    """Write version.txt (atomically), only if it says something else."""
    if state.installed_version() != version:
        atomic_write_text(state.version_file, version + "\n")
