"""Unpacking the confirmed package into the job's work folder, as part of its verification.

`verify_package(hashes=False)` checks the signature, listing, sizes and every rule;
unpacking then reads each file once, hashing it against the signed manifest as it
is written to the work folder (`install.stage`), so the package is inflated once
instead of twice. Nothing in the install directory is touched: a file that does not
match stops the apply before the backup, and the work folder is discarded.

Also checked here, before 2 x the update's size is written: that the work folder can
rename into the install directory (same disk) and that the disk has room for the new
files and the backup of the ones they replace.
"""

from __future__ import annotations

import os
import shutil

from autotel.apply.faults import fault_point
from autotel.apply.install import Progress, stage
from autotel.apply.package import OpenPackage
from autotel.apply.plan import space_problem
from autotel.apply.targets import InstallDir
from autotel.apply.workdir import WorkDir, remove_stale
from autotel.config import Config
from autotel.errors import DiskSpaceError
from autotel.package.unpack import read_migrations


def unpack_checked(config: Config, package: OpenPackage, work: WorkDir,
                   progress: Progress) -> None:
    """Stage every file of `package` in `work`, each checked by hash and durable.

    Raises:
        SignatureError: a file or migration no longer matches the signed manifest.
        PackageError: a package path is where the install directory has a folder.
        StateError: the work folder is on another disk.
        DiskSpaceError: the disk has no room for the new files and the backup.
    """
    install = InstallDir.of(config)
    remove_stale(config.state, work)
    manifest = package.manifest
    read_migrations(package.path, manifest)  # their hashes; the SQL is read again to run it
    plan = install.plan([f.path for f in manifest.files])
    work.check_same_disk(install.root)
    backup_bytes = sum(os.stat(install.root / rel).st_size for rel in plan.replaced)
    problem = space_problem(shutil.disk_usage(config.state.root).free, backup_bytes,
                            manifest.total_size)
    if problem:
        raise DiskSpaceError(problem)
    work.set_phase("staging")
    stage(package, install, work, progress)
    work.set_phase("staged")
    fault_point(config.state, "verify:staged")
