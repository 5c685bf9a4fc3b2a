"""`verify` (apply): is the pending package complete, genuine, and the one the operator saw?

It also unpacks the files into the job's work folder, because that is where each
file's bytes are hashed against the signed manifest (`autotel.apply.unpack`): one
pass over the package instead of one to check it and another to unpack it. When
the `stage` job unpacked the package while it waited, those files are hashed again
and taken over instead.
"""

from __future__ import annotations

import hmac
import re
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from autotel.apply.faults import fault_point
from autotel.apply.package import manifest_sha256, open_package
from autotel.apply.plan import thinned
from autotel.apply.unpack import unpack_checked
from autotel.apply.workdir import WorkDir
from autotel.errors import JobError, PackageError, SignatureError
from autotel.package.pending import PendingUpdate, read_pending
from autotel.package.verify import verify_package
from autotel.package.zipread import file_sha256
from autotel.steps import step
from autotel.steps.context import StepContext

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
MSG = ("Перевірка пакету...", "Verifying the package...")


@step("verify")
def verify(ctx: StepContext) -> dict[str, Any]:
    """Re-verify the stored package completely, against the installed version, and stage it.

    Without `params.sha256` the waiting package is the confirmed one: DESIGN.md lets a
    person drop `{"kind": "apply"}` alone into the queue to apply what is waiting.

    Raises:
        JobError: `params.sha256` is given but not a SHA-256.
        PackageError / SignatureError / NotNewerError: it is not (or no longer) acceptable,
            it changed after it was received, or it is not the package the operator confirmed.
        DiskSpaceError / StateError: the disk is too full, or the state directory is on
            another disk than the install directory.
    """
    fault_point(ctx.state, "verify:start")
    pending = _confirmed_package(ctx)
    installed = ctx.state.installed_version()
    with ThreadPoolExecutor(1) as pool:  # hash the whole zip while verifying its contents
        whole = pool.submit(file_sha256, pending.path)
        manifest = verify_package(pending.path, ctx.config, installed_version=installed,
                                  hashes=False)
        manifest_hash = manifest_sha256(pending.path, manifest)
        result = {"package": str(pending.path), "sha256": pending.sha256,
                  "manifest_sha256": manifest_hash,
                  "from_version": installed, "to_version": manifest.version,
                  "files": len(manifest.files)}
        with open_package(pending.path, manifest_hash) as package:
            result["unpacked_ahead"] = unpack_checked(
                ctx.config, package, WorkDir.of(ctx.state, ctx.job["id"]),
                thinned(lambda done, total: ctx.progress(done / total, *MSG)),
                ahead=WorkDir.of_pending(ctx.state, pending.sha256))
        found = whole.result()
    if not hmac.compare_digest(found, pending.sha256):
        raise SignatureError(f"{pending.path.name}: sha256 {found[:12]}… differs from "
                             f"{pending.sha256[:12]}… recorded when it was received; the stored "
                             "package was altered")
    fault_point(ctx.state, "verify:end")
    return result


def _confirmed_package(ctx: StepContext) -> PendingUpdate:
    """The waiting package, if it is the one the operator confirmed."""
    pending = read_pending(ctx.state)
    if pending is None:
        raise PackageError("no update is waiting to be applied; it may have been applied already")
    confirmed = str(ctx.params.get("sha256", pending.sha256)).strip().lower()
    if not _SHA256.match(confirmed):
        raise JobError("params.sha256 of an apply job must be the SHA-256 of the update the "
                       "operator confirmed (64 hex digits), or absent for the waiting one")
    if not hmac.compare_digest(pending.sha256, confirmed):
        raise PackageError(
            f"the waiting update v{pending.version} is not the one that was confirmed (confirmed "
            f"sha256 {confirmed[:12]}…, waiting {pending.sha256[:12]}…); confirm the update "
            "shown now"
        )
    return pending
