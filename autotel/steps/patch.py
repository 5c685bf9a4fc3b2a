"""`patch` (apply): move the files `verify` staged into the install directory.

Resumable: the journal in the job's work folder says how far it got (see
`autotel.apply.workdir`), and a file still staged is a file not yet installed.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from autotel.apply.faults import fault_point
from autotel.apply.install import discard_replaced, install_files
from autotel.apply.package import open_package
from autotel.apply.plan import thinned
from autotel.apply.targets import InstallDir
from autotel.apply.workdir import WorkDir
from autotel.errors import StateError
from autotel.steps import step
from autotel.steps.context import StepContext

MSG = ("Застосування файлів: {done} з {total}", "Applying files: {done} of {total}")


@step("patch")
def patch(ctx: StepContext) -> dict[str, Any]:
    """Install what is still staged.

    Raises:
        StateError: the staged files are gone, or the work folder was tampered with.
        PackageError: a target is unsafe (checked again right before each rename).
    """
    state = ctx.state
    fault_point(state, "patch:start")
    verified = ctx.results
    work = WorkDir.of(state, ctx.job["id"])
    phase = work.phase()
    if phase not in ("staged", "replacing", "replaced"):
        raise StateError(f"the files verified for this update are no longer staged in "
                         f"{work.root}; nothing was installed, apply the update again")
    if phase != "replaced":
        with open_package(Path(verified["package"]), verified["manifest_sha256"]) as package:
            entries = package.manifest.files
        work.set_phase("replacing")
        report = thinned(lambda done, total: ctx.progress(
            done / total, *(m.format(done=done, total=total) for m in MSG)))

        def after_each(done: int, total: int) -> None:
            report(done, total)
            fault_point(state, f"patch:replaced:{done}")

        install_files(entries, InstallDir.of(ctx.config), work, after_each)
        work.set_phase("replaced")
    discard_replaced(work)
    shutil.rmtree(work.files, ignore_errors=True)
    fault_point(state, "patch:end")
    return {"files_installed": verified["files"]}
