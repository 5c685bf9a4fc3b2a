"""`backup` (apply): save every file the update replaces, and list what it creates."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from autotel.apply import backup as backups
from autotel.apply import migrations
from autotel.apply.faults import fault_point
from autotel.apply.package import open_package
from autotel.apply.plan import backup_name
from autotel.apply.targets import InstallDir
from autotel.apply.workdir import WorkDir
from autotel.errors import StateError
from autotel.steps import step
from autotel.steps.context import StepContext
from autotel.timeutil import utcnow


@step("backup")
def backup(ctx: StepContext) -> dict[str, Any]:
    """Write `backups/backup_v<old>_<stamp>.zip`, or reuse this job's if it is intact.

    The name is recorded in the work folder before the zip is written, so a re-run
    after a crash rewrites that same backup instead of leaving a second one.
    """
    fault_point(ctx.state, "backup:start")
    work = WorkDir.of(ctx.state, ctx.job["id"])
    record = work.read_backup() or {}
    if not _intact(record):
        path = Path(record.get("backup") or _new_path(ctx))
        work.write_backup({"backup": str(path)})
        record = _write(ctx, path)
        work.write_backup(record)
    backups.prune(ctx.state.backups, ctx.config.keep_backups, Path(record["backup"]).name)
    fault_point(ctx.state, "backup:end")
    return record


def _new_path(ctx: StepContext) -> Path:
    folder = ctx.state.backups
    folder.mkdir(parents=True, exist_ok=True)
    taken = {p.name for p in folder.iterdir()}
    return folder / backup_name(ctx.results["from_version"], utcnow(), taken)


def _write(ctx: StepContext, path: Path) -> dict[str, Any]:
    verified = ctx.results
    install = InstallDir.of(ctx.config)
    with open_package(Path(verified["package"]), verified["manifest_sha256"]) as package:
        manifest = package.manifest
    plan = install.plan([f.path for f in manifest.files])
    names = [m.name for m in manifest.migrations]
    new_migrations = sorted(set(names) - set(migrations.already_applied(ctx.config, names)))
    backups.write_backup(path, install, plan, verified["from_version"], verified["to_version"],
                         new_migrations)
    fault_point(ctx.state, "backup:written")
    return {"backup": str(path), "replaced": len(plan.replaced), "created": len(plan.created)}


def _intact(record: dict[str, Any]) -> bool:
    """This job's backup from before a crash is complete and undamaged."""
    if "replaced" not in record:
        return False
    try:
        backups.check_backup(Path(record["backup"]))
    except StateError:
        return False
    return True
