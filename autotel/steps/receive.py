"""`receive`: accept an uploaded update package as the pending update, or refuse it.

Params (written by the agent): `upload` (the zip under `state/incoming/`),
`version` and `signature` (the `X-Update-Version` / `X-Manifest-Signature`
headers), `peer_ip`. The error class a refusal raises becomes the job's
`error_type`, which the agent turns into its answer (SignatureError -> 400
invalid_sig, PackageError -> 400 invalid_package, NotNewerError -> 409
same_version). The upload is deleted whatever happens; nothing is written under
`pending_update/` unless the package passed every check. A package kept pending
queues a `stage` job, which unpacks it ahead of the operator's confirmation.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from autotel.apply.pathroom import check_fits
from autotel.errors import JobError, PackageError, SignatureError
from autotel.package.delivery import check_delivery
from autotel.package.manifest import Manifest, package_file_name
from autotel.package.pending import read_pending, store_pending
from autotel.package.verify import verify_package
from autotel.package.zipread import file_sha256
from autotel.steps import step
from autotel.steps.context import StepContext
from autotel.steps.stage import queue_stage


@step("receive")
def receive(ctx: StepContext) -> dict[str, Any]:
    upload = upload_path(ctx)
    version = str(ctx.params.get("version") or "").strip()
    source = package_file_name(version) if version else upload.name
    try:
        if not upload.exists():
            return _resumed(ctx, version, source)
        manifest, sha256 = _checked(ctx, upload, version, source)
        stored = store_pending(ctx.state, upload, manifest, sha256)
    finally:
        upload.unlink(missing_ok=True)
    queue_stage(ctx.state, sha256)
    ctx.progress(1.0, f"Отримано оновлення v{version}", f"Update v{version} received")
    return {
        "version": version,
        "sha256": sha256,
        "stored": stored.changed,
        "replaced": stored.replaced,
    }


def _checked(ctx: StepContext, upload: Path, version: str, source: str) -> tuple[Manifest, str]:
    """Headers, then the whole package; returns its manifest and the zip's SHA-256."""
    check_delivery(upload, version, str(ctx.params.get("signature") or ""), source)
    with ThreadPoolExecutor(1) as pool:  # hash the zip on the other core while verifying
        whole = pool.submit(file_sha256, upload)
        manifest = verify_package(
            upload,
            ctx.config,
            installed_version=ctx.state.installed_version(),
            source=source,
            progress=lambda f: ctx.progress(0.9 * f, "Перевірка пакета", "Checking the package"),
        )
        sha256 = whole.result()
    if manifest.version != version:
        raise SignatureError(
            f"{source}: X-Update-Version {version!r} differs from the signed "
            f"manifest's {manifest.version!r}"
        )
    check_fits(ctx.state, ctx.config.install_path, (f.path for f in manifest.files), source)
    return manifest, sha256


@step("receive_cleanup")
def receive_cleanup(ctx: StepContext) -> dict[str, Any]:
    """After a refusal or a crash: the upload must not stay behind."""
    upload_path(ctx).unlink(missing_ok=True)
    return {}


def upload_path(ctx: StepContext) -> Path:
    """The `upload` param, only if it lies in `state/incoming/` (it will be deleted).

    Raises:
        JobError: missing, or outside the incoming folder.
    """
    raw = ctx.params.get("upload")
    if not raw:
        raise JobError(
            'receive job without "upload" param (the uploaded zip under state/incoming/)'
        )
    path = Path(str(raw))
    incoming = ctx.state.incoming.resolve()
    if not path.resolve().is_relative_to(incoming) or path.resolve() == incoming:
        raise JobError(f"upload {raw!r} is not a file in {incoming}; refusing to touch it")
    return path


def _resumed(ctx: StepContext, version: str, source: str) -> dict[str, Any]:
    """The upload is gone: a run interrupted after storing it, or a bad job."""
    pending = read_pending(ctx.state, verify_sha256=True)
    if pending is not None and pending.version == version:
        queue_stage(ctx.state, pending.sha256)
        return {"version": version, "sha256": pending.sha256, "stored": False, "replaced": None}
    raise PackageError(f"{source}: the uploaded file is gone; send the package again")
