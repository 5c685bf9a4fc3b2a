"""`restart` (apply): record the new version, ask the watchdog to restart, forget the package."""

from __future__ import annotations

from typing import Any

from autotel.apply.faults import fault_point
from autotel.apply.finish import finish_install
from autotel.apply.workdir import WorkDir
from autotel.steps import step
from autotel.steps.context import StepContext


@step("restart")
def restart(ctx: StepContext) -> dict[str, Any]:
    fault_point(ctx.state, "restart:start")
    verified = ctx.results
    finish_install(ctx.state, ctx.job["id"], verified["to_version"], verified["sha256"])
    WorkDir.of(ctx.state, ctx.job["id"]).remove()
    fault_point(ctx.state, "restart:end")
    return {"installed_version": verified["to_version"]}
