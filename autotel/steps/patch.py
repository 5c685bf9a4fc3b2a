"""`patch` (apply): stage the package's files, then move them into the install directory.

Resumable: the journal in the job's work folder says how far it got (see
`autotel.apply.workdir`), and a file still staged is a file not yet installed.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from autotel.apply.faults import fault_point
from autotel.apply.install import discard_replaced, install_files, stage
from autotel.apply.package import open_package
from autotel.apply.plan import progress_steps
from autotel.apply.targets import InstallDir
from autotel.apply.workdir import WorkDir
from autotel.steps import step
from autotel.steps.context import StepContext

MSG = ("Застосування файлів: {done} з {total}", "Applying files: {done} of {total}")


@step("patch")
def patch(ctx: StepContext) -> dict[str, Any]:
    """Stage (unless already staged), then install what is still staged.

    Raises:
        SignatureError: a file in the package no longer matches the signed manifest.
        PackageError: a target is unsafe; StateError: the work folder was tampered with.
    """
    state = ctx.state
    fault_point(state, "patch:start")
    verified = ctx.results
    work = WorkDir.of(state, ctx.job["id"])
    install = InstallDir.of(ctx.config)
    if work.phase() != "replaced":
        with open_package(Path(verified["package"]), verified["manifest_sha256"]) as package:
            entries = package.manifest.files
            if work.phase() in (None, "staging"):
                work.set_phase("staging")
                stage(package, install, work, _reporter(ctx, 0.0, 0.5))
                work.set_phase("staged")
        fault_point(state, "patch:staged")
        work.set_phase("replacing")
        report = _reporter(ctx, 0.5, 1.0)

        def after_each(done: int, total: int) -> None:
            report(done, total)
            fault_point(state, f"patch:replaced:{done}")

        install_files(entries, install, work, after_each)
        work.set_phase("replaced")
    discard_replaced(work)
    shutil.rmtree(work.files, ignore_errors=True)
    fault_point(state, "patch:end")
    return {"files_installed": verified["files"]}


def _reporter(ctx: StepContext, low: float, high: float) -> Callable[[int, int], None]:
    """Progress over [low, high] of the step, about 10 events however many files there are."""

    def report(done: int, total: int) -> None:
        if done == total or done % progress_steps(total) == 0:
            counts = {"done": done, "total": total}
            ctx.progress(low + (high - low) * done / total, MSG[0].format(**counts),
                         MSG[1].format(**counts))

    return report
