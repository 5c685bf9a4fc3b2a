"""`stage`: unpack the waiting update while it waits for the operator.

Queued by `receive` whenever a package becomes (or stays) pending. It checks the
package as the apply's `verify` does (signature, rules, every file's SHA-256 as it
is written) and leaves it unpacked in `state/staging/pending-…/`, so the apply after
the operator's confirmation only hashes those files again and renames them in.

Nothing depends on it: a site without room for the unpacked files (next to the
backup the apply will write) skips it, and the apply unpacks the package itself.
"""

from __future__ import annotations

import hmac
from typing import Any

from autotel.apply.package import manifest_sha256, open_package
from autotel.apply.plan import thinned
from autotel.apply.unpack import unpack_ahead
from autotel.apply.workdir import WorkDir
from autotel.errors import DiskSpaceError
from autotel.package.pending import read_pending
from autotel.package.verify import verify_package
from autotel.spool.queue import Spool
from autotel.state import StatePaths
from autotel.steps import step
from autotel.steps.context import StepContext

MSG = ("Підготовка оновлення", "Preparing the update")


def queue_stage(state: StatePaths, sha256: str) -> None:
    """Have the runner unpack the waiting update `sha256` once the current job is done."""
    Spool(state).submit("stage", {"sha256": sha256})


@step("stage")
def stage_ahead(ctx: StepContext) -> dict[str, Any]:
    """Unpack the update `params.sha256` names, if it still waits (without it: the one waiting).

    Raises: what `verify` raises for a package that is no longer acceptable.
    """
    pending = read_pending(ctx.state)
    if pending is None:
        return {"staged": False, "reason": "no update is waiting"}
    wanted = str(ctx.params.get("sha256") or pending.sha256)
    if not hmac.compare_digest(pending.sha256, wanted):
        return {"staged": False, "reason": "this update is no longer waiting"}
    manifest = verify_package(pending.path, ctx.config,
                              installed_version=ctx.state.installed_version(), hashes=False)
    folder = WorkDir.of_pending(ctx.state, pending.sha256)
    try:
        with open_package(pending.path, manifest_sha256(pending.path, manifest)) as package:
            unpack_ahead(ctx.config, package, folder,
                         thinned(lambda done, total: ctx.progress(done / total, *MSG)))
    except DiskSpaceError as e:
        return {"staged": False, "reason": f"{e}; the apply will unpack it then"}
    return {"staged": True, "version": pending.version, "files": len(manifest.files)}
