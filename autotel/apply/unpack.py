"""Unpacking a package into a work folder: ahead while it waits, or in the apply itself.

`verify_package(hashes=False)` checks the signature, listing, sizes and every rule;
unpacking then reads each file once, hashing it against the signed manifest as it
is written to the work folder (`install.stage`), so the package is inflated once
instead of twice. Nothing in the install directory is touched: a file that does not
match stops the apply before the backup, and the work folder is discarded.

An update may wait days for the operator, so the `stage` job unpacks it ahead into
its own folder (`WorkDir.of_pending`). The apply then only hashes those files again
and renames the folder into its work folder; the package zip stays the authority,
and if anything in the folder differs from the signed manifest the apply unpacks
the zip as it would have without it.

Also checked here, before the update's files and backup are written: that the work
folder can rename into the install directory (same disk) and that the disk has room.
"""

from __future__ import annotations

import logging
import os
import shutil

from autotel.apply.faults import fault_point
from autotel.apply.install import Progress, check_staged, stage
from autotel.apply.package import OpenPackage
from autotel.apply.plan import space_problem
from autotel.apply.targets import InstallDir
from autotel.apply.workdir import PENDING_PREFIX, WorkDir, remove_stale
from autotel.config import Config
from autotel.errors import DiskSpaceError
from autotel.fsutil import fsync_dir
from autotel.package.unpack import read_migrations

log = logging.getLogger("autotel.apply")


def unpack_checked(config: Config, package: OpenPackage, work: WorkDir,
                   progress: Progress, ahead: WorkDir | None = None) -> bool:
    """Stage every file of `package` in `work`, each checked by hash and durable.

    `ahead` is the folder the package was unpacked into while it waited, if any: its
    files are taken over when they all still match. Returns whether they were.

    Raises:
        SignatureError: a file or migration no longer matches the signed manifest.
        PackageError: a package path is where the install directory has a folder.
        StateError: the work folder is on another disk.
        DiskSpaceError: the disk has no room for the new files and the backup.
    """
    ready = ahead if ahead is not None and ahead.is_staged() else None
    remove_stale(config.state, work, *([ready] if ready else []))
    read_migrations(package.path, package.manifest)  # their hashes; the SQL is read again
    install = InstallDir.of(config)
    _check_room(config, install, package, work, unpacked=ready is not None)
    work.set_phase("staging")
    adopted = ready is not None and _adopt(config, ready, package, work, progress)
    if not adopted:
        if ready is not None:  # the room was checked for the backup alone
            _check_room(config, install, package, work, unpacked=False)
        stage(package, install, work, progress)
    work.set_phase("staged")
    fault_point(config.state, "verify:staged")
    return adopted


def unpack_ahead(config: Config, package: OpenPackage, folder: WorkDir,
                 progress: Progress) -> None:
    """Unpack the waiting `package` into `folder`, checked and durable, for its apply.

    Raises:
        as `unpack_checked`; the folder is removed when it cannot be completed.
    """
    if folder.is_staged():
        return
    remove_stale(config.state, folder, prefixes=(PENDING_PREFIX,))
    install = InstallDir.of(config)
    try:
        _check_room(config, install, package, folder, unpacked=False)
        folder.set_phase("staging")
        fault_point(config.state, "stage:unpacking")
        stage(package, install, folder, progress)
        folder.set_phase("staged")
    except BaseException:
        folder.remove()
        raise


def _check_room(config: Config, install: InstallDir, package: OpenPackage, work: WorkDir,
                *, unpacked: bool) -> None:
    """Raises: PackageError, StateError or DiskSpaceError, as `unpack_checked` says."""
    manifest = package.manifest
    plan = install.plan([f.path for f in manifest.files])
    work.check_same_disk(install.root)
    backup_bytes = sum(os.stat(install.root / rel).st_size for rel in plan.replaced)
    new_bytes = 0 if unpacked else manifest.total_size
    problem = space_problem(shutil.disk_usage(config.state.root).free, backup_bytes, new_bytes)
    if problem:
        raise DiskSpaceError(problem)


def _adopt(config: Config, ready: WorkDir, package: OpenPackage, work: WorkDir,
           progress: Progress) -> bool:
    """Move the files unpacked ahead into `work` and check them all; False if any differs.

    The folder stops being `staged` before its files move, so a crash in between leaves
    a folder that is removed, not trusted; the apply then unpacks the package instead.
    """
    ready.journal.unlink(missing_ok=True)
    shutil.rmtree(work.files, ignore_errors=True)
    try:
        os.replace(ready.files, work.files)
        fsync_dir(work.root)
        fault_point(config.state, "verify:adopting")
        matches = check_staged(package, InstallDir.of(config), work, progress)
    except OSError:  # e.g. Windows refuses to rename a folder a scanner has a file open in
        matches = False
    ready.remove()
    if not matches:
        shutil.rmtree(work.files, ignore_errors=True)
        log.warning("the update unpacked ahead in %s changed while it waited; unpacking "
                    "the package again", ready.root)
    return matches
