"""`rollback` (apply, on failure): put the site back on the version it had.

Files are restored from this job's backup and created files removed; the failed
migration's transaction was already rolled back by the database; version.txt is
set back; the pending package is kept so the operator can retry, and a `stage` job
unpacks it ahead again. Idempotent, so a rollback interrupted by a crash is simply
run again.

One case cannot be undone: if the package's migrations were committed (a failure
after `migrate`, e.g. writing version.txt on a full disk), the old files would not
fit the new database. Then the update is completed instead, and the result says so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from autotel.apply import backup as backups
from autotel.apply import migrations
from autotel.apply.faults import fault_point
from autotel.apply.finish import finish_install, set_version
from autotel.apply.targets import InstallDir
from autotel.apply.workdir import WorkDir
from autotel.errors import DatabaseError
from autotel.steps import step
from autotel.steps.context import StepContext
from autotel.steps.stage import queue_stage


@step("rollback")
def rollback(ctx: StepContext) -> dict[str, Any]:
    fault_point(ctx.state, "rollback:start")
    done = ctx.results
    work = WorkDir.of(ctx.state, ctx.job["id"])
    if "backup" not in done:  # failed before the backup: nothing was touched
        work.remove()
        return {"rolled_back": True, "installed_version": ctx.state.installed_version()}
    path = Path(done["backup"])
    index = backups.check_backup(path)
    if _migrations_committed(ctx, done, list(index.new_migrations)):
        finish_install(ctx.state, ctx.job["id"], index.to_version, done["sha256"])
        work.remove()
        return {"rolled_back": False, "installed_version": index.to_version,
                "note": "the update's database migrations were already committed, so the update "
                        "was completed instead of undone"}
    restored, removed = backups.restore(
        path, index, InstallDir.of(ctx.config),
        after_each=lambda n: fault_point(ctx.state, f"rollback:restored:{n}"))
    set_version(ctx.state, index.from_version)
    work.remove()
    queue_stage(ctx.state, done["sha256"])  # a retry finds it unpacked
    fault_point(ctx.state, "rollback:end")
    return {"rolled_back": True, "installed_version": index.from_version,
            "files_restored": restored, "files_removed": removed}


def _migrations_committed(ctx: StepContext, done: dict[str, Any], new: list[str]) -> bool:
    """Whether the database already has this update's new migrations (all of them or none)."""
    if not new:
        return False
    if "migrations_applied" in done:  # the migrate step finished
        return True
    try:
        return migrations.already_applied(ctx.config, new) == new
    except DatabaseError:
        # Unreachable now, most likely why the migrate step failed: then nothing was
        # committed, and the old files match the database as it is.
        return False
