"""Pure decisions of an apply: what an update touches, and which backups to keep.

Nothing here reads the disk: the caller says what exists, these functions decide.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import PurePosixPath
from typing import Literal

from autotel.errors import PackageError
from autotel.fsutil import megabytes

SPACE_MARGIN = 50_000_000
Kind = Literal["file", "dir", "special"] | None
_KIND_WORDS = {"dir": "folder", "special": "link or special file", "file": "file"}
_BACKUP_NAME = re.compile(
    r"^backup_v(?P<version>\d+\.\d+\.\d+)_(?P<stamp>\d{8}-\d{6})(?:_(?P<n>\d+))?\.zip$"
)


@dataclass(frozen=True)
class ApplyPlan:
    """What installing the package's files does to the install directory."""

    replaced: tuple[str, ...]
    created: tuple[str, ...]
    created_dirs: tuple[str, ...]  # parents before children


def make_plan(paths: Iterable[str], kind_of: Callable[[str], Kind]) -> ApplyPlan:
    """Split the package's paths into files replaced and files created.

    `kind_of(rel)` tells what is at `rel` in the install directory now.

    Raises:
        PackageError: a path names a directory or a special file, or goes through a file.
    """
    replaced: list[str] = []
    created: list[str] = []
    new_dirs: dict[str, None] = {}
    for rel in paths:
        kind = kind_of(rel)
        if kind == "file":
            replaced.append(rel)
            continue
        if kind is not None:
            raise PackageError(f"{rel}: the package has a file where the install directory has a "
                               f"{_KIND_WORDS[kind]}")
        created.append(rel)
        for parent in reversed(PurePosixPath(rel).parents[:-1]):
            parent_kind = kind_of(parent.as_posix())
            if parent_kind is None:
                new_dirs.setdefault(parent.as_posix())
            elif parent_kind != "dir":
                raise PackageError(f"{rel}: {parent} is a {_KIND_WORDS[parent_kind]} in the "
                                   "install directory, not a folder")
    return ApplyPlan(tuple(replaced), tuple(created), tuple(new_dirs))


def backup_name(version: str, moment: datetime, taken: set[str]) -> str:
    """`backup_v1.1.0_20260222-101500.zip`, with `_2`, `_3`… if that second is taken."""
    base = f"backup_v{version}_{moment.strftime('%Y%m%d-%H%M%S')}"
    name, n = f"{base}.zip", 1
    while name in taken:
        n += 1
        name = f"{base}_{n}.zip"
    return name


def backups_to_prune(names: Iterable[str], keep: int) -> list[str]:
    """The backups beyond the newest `keep` (by the time in their name); other files are ignored."""
    dated = []
    for name in names:
        found = _BACKUP_NAME.match(name)
        if found:
            dated.append(((found["stamp"], int(found["n"] or 1)), name))
    dated.sort(reverse=True)
    return [name for _, name in dated[max(keep, 0):]]


def space_problem(free: int, backup_bytes: int, new_bytes: int) -> str | None:
    """Why the disk is too full for this apply, or None.

    The backup holds the replaced files and the staging folder the new ones, both
    until the end; a margin keeps the site's own writes (database, logs) going.
    """
    needed = backup_bytes + new_bytes + SPACE_MARGIN
    if free >= needed:
        return None
    return (f"not enough free disk space for this update: it needs {megabytes(needed)} "
            f"({megabytes(backup_bytes)} backup, {megabytes(new_bytes)} new files, "
            f"{megabytes(SPACE_MARGIN)} margin), {megabytes(free)} is free; free some space and apply again")



def thinned(report: Callable[[int, int], None], reports: int = 10) -> Callable[[int, int], None]:
    """`report(done, total)` passed on ~`reports` times per pass and at its end, not 1,000 times."""

    def maybe(done: int, total: int) -> None:
        if done == total or done % max(1, total // reports) == 0:
            report(done, total)

    return maybe
