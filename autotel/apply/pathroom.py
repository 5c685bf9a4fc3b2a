"""Whether every path of a package fits on this site, asked when the package arrives.

The apply writes each file at its place in the install directory, beside it under a
temporary name, and under the state directory's work folders
(`staging/apply-<job>/replaced/<path>`, see `autotel.apply.workdir`). A path that
fits the admin's machine may not fit there: Windows allows 259 characters unless
long paths are enabled, and the install directory of a site may be deep. Refused at
receive, the admin hears it from the push (`400 invalid_package`) instead of the
operator seeing a raw OS error in an apply that can never succeed.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from pathlib import Path

from autotel.apply.workdir import PREFIX
from autotel.errors import PackageError
from autotel.state import StatePaths

# A spool job id is 35 characters (`20261129T114000123456Z-3fa1c2-apply`); a job file
# dropped by hand may be named longer.
JOB_ID_ROOM = 64
# `atomic_writer`'s temporary name beside a file: `.` + name + `.` + 8 random + `.tmp`.
TEMP_NAME_ROOM = 14


def longest_path() -> int:
    """The longest absolute path this machine lets a program open (as `path_length` counts).

    Windows: 259 characters, unless long paths are enabled in the registry (Python is
    long-path aware then). Elsewhere the kernel's PATH_MAX, 4096 bytes with the NUL.
    """
    if sys.platform != "win32":
        return 4095
    import winreg

    try:
        with winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE,
                            r"SYSTEM\CurrentControlSet\Control\FileSystem") as key:
            enabled = winreg.QueryValueEx(key, "LongPathsEnabled")[0] == 1
    except OSError:
        enabled = False
    return 32766 if enabled else 259


def path_length(path: str) -> int:
    """The length as the OS counts it: UTF-16 units on Windows, bytes elsewhere."""
    if sys.platform == "win32":
        return len(path.encode("utf-16-le", "surrogatepass")) // 2
    return len(os.fsencode(path))


def check_fits(state: StatePaths, install_root: Path, paths: Iterable[str], source: str,
               limit: int | None = None) -> None:
    """Raises: PackageError naming the first path the apply could not write here.

    `limit` is the longest path allowed (default: this machine's, `longest_path`).
    """
    limit = limit if limit is not None else longest_path()
    work = state.staging / f"{PREFIX}{'x' * JOB_ID_ROOM}" / "replaced"
    for rel in paths:
        deepest = max(path_length(str(work / rel)),
                      path_length(str(install_root / rel)) + TEMP_NAME_ROOM)
        if deepest > limit:
            raise PackageError(
                f"{source}: {rel!r} would need a path of {deepest} characters on this site, "
                f"more than the {limit} its system allows (install directory {install_root}); "
                "publish it with shorter paths, or move the site to a shorter folder"
            )
