"""Putting the package's files in place: stage them all, then rename them in one by one.

Staging copies every file out of the package into the work folder, checking its
SHA-256 and size against the signed manifest and giving it the permissions of
the file it replaces, then makes them all durable. Only then is anything in the
install directory touched: each staged file is moved over its target with
`os.replace`, atomic on one file system. A staged file leaves the work folder in
the same rename that installs it, so after a crash the files still staged are
exactly the ones left to do. Windows will not replace a program that is running but
lets it be renamed, so such a target first moves aside into the work folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import shutil
import stat
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from autotel.apply.durable import folders_up_to, fsync_dirs, in_parallel, make_durable
from autotel.apply.package import OpenPackage
from autotel.apply.targets import InstallDir
from autotel.apply.workdir import WorkDir
from autotel.errors import SignatureError, StateError
from autotel.fsutil import replace
from autotel.package.manifest import FileEntry
from autotel.package.rules import hash_mismatch
from autotel.package.zipread import file_sha256, stream, stream_sha256

Progress = Callable[[int, int], None]
R = TypeVar("R")


def stage(package: OpenPackage, install: InstallDir, work: WorkDir, progress: Progress) -> None:
    """Copy every file of the package into `work.files`, checked and durable.

    Raises:
        SignatureError: a file's bytes differ from the signed manifest.
    """
    shutil.rmtree(work.files, ignore_errors=True)
    folders = _Folders()
    staged = _counted(lambda entry: _stage_file(package, install, work, entry, folders),
                      package.manifest.files, progress)
    make_durable(staged, work.root)


def _counted(func: Callable[[FileEntry], R], entries: list[FileEntry],
             progress: Progress) -> list[R]:
    """`func` over `entries` on a few threads, reporting each one done."""
    lock, done = threading.Lock(), [0]

    def one(entry: FileEntry) -> R:
        result = func(entry)
        with lock:  # progress goes to one events file, from one thread at a time
            done[0] += 1
            progress(done[0], len(entries))
        return result

    return in_parallel(one, entries)


def _stage_file(package: OpenPackage, install: InstallDir, work: WorkDir, entry: FileEntry,
                folders: _Folders) -> Path:
    source = package.path.name
    try:
        info = package.zip.getinfo(entry.entry_name)
    except KeyError:
        raise SignatureError(f"{source}: {entry.entry_name} is missing from the package") from None
    dest = work.files / entry.path
    folders.ensure(dest.parent)
    digest = hashlib.sha256()
    with open(dest, "wb") as out:
        for block in stream(package.zip, info, source, limit=entry.size):
            digest.update(block)
            out.write(block)
        _keep_mode(install.root / entry.path, out.fileno())
    if not hmac.compare_digest(digest.hexdigest(), entry.sha256):
        raise hash_mismatch(source, entry.entry_name, entry.sha256, digest.hexdigest())
    return dest


def _keep_mode(old: Path, fd: int) -> bool:
    """A replaced file keeps its permissions (e.g. an executable script stays executable).

    Returns whether the mode of `fd` had to change.
    """
    try:
        mode = stat.S_IMODE(os.stat(old).st_mode)
    except FileNotFoundError:
        return False
    if sys.platform == "win32" or stat.S_IMODE(os.fstat(fd).st_mode) == mode:
        return False
    os.fchmod(fd, mode)
    return True


def check_staged(package: OpenPackage, install: InstallDir, work: WorkDir,
                 progress: Progress) -> bool:
    """Whether `work.files`, staged earlier, holds exactly the package's files, unchanged.

    Days may pass between staging and the apply, so each file is hashed again, and
    the folder must hold nothing but them: plain files with one link each, no symbolic
    link anywhere (what moves into place must be what was checked). Each file gets the
    permissions its target has now; a changed mode is made durable at once. The
    files' data was made durable when they were staged.
    """
    entries = package.manifest.files
    if _files_under(work.files) != {e.path for e in entries}:
        return False
    return all(_counted(
        lambda entry: _staged_matches(work.files / entry.path, install.root / entry.path, entry),
        entries, progress))


def _files_under(folder: Path) -> set[str] | None:
    """The relative paths of the files under `folder`; None if a link is there."""
    found: set[str] = set()
    for parent, folders, files in os.walk(folder):  # each folder is listed before it is entered
        if any(_is_link(os.path.join(parent, name)) for name in folders + files):
            return None
        found.update(Path(parent, name).relative_to(folder).as_posix() for name in files)
    return found


def _is_link(path: str) -> bool:
    """A symbolic link, or on Windows any reparse point (a junction too)."""
    info = os.lstat(path)
    reparse = getattr(info, "st_file_attributes", 0) & stat.FILE_ATTRIBUTE_REPARSE_POINT
    return stat.S_ISLNK(info.st_mode) or bool(reparse)


def _staged_matches(staged: Path, target: Path, entry: FileEntry) -> bool:
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
    try:
        with open(os.open(staged, flags), "rb") as f:
            info = os.fstat(f.fileno())
            if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
                return False
            found = stream_sha256(f)
            if _keep_mode(target, f.fileno()):
                os.fsync(f.fileno())
    except OSError:  # gone, a folder, or a link (O_NOFOLLOW): not what was staged
        return False
    return hmac.compare_digest(found, entry.sha256)


def install_files(entries: list[FileEntry], install: InstallDir, work: WorkDir,
                  progress: Progress) -> int:
    """Move every staged file over its target; return how many were moved now.

    A file no longer staged was installed before a crash: its target must then
    hold the new content, which is checked.

    Raises:
        StateError: a file is neither staged nor installed (the work folder was tampered
            with), or a target can be neither replaced nor moved aside.
        PackageError: a target is unsafe (checked again right before the rename).
    """
    moved = 0
    targets = install.targets([e.path for e in entries])
    folders = _Folders()
    for index, (entry, target) in enumerate(zip(entries, targets, strict=True), start=1):
        staged = work.files / entry.path
        if staged.is_file():
            _keep_old_inode(target, work.replaced / entry.path, folders)
            folders.ensure(target.parent)
            _put_in_place(staged, target, work.aside / entry.path)
            moved += 1
        elif not _installed(target, entry.sha256):
            raise StateError(
                f"{entry.path}: neither staged in {work.files} nor installed with the new content; "
                "the work folder was changed while the apply was stopped"
            )
        progress(index, len(entries))
    fsync_dirs(folders_up_to(install.root, targets))
    return moved


def _put_in_place(staged: Path, target: Path, aside: Path) -> None:
    """Rename the staged file over its target.

    Windows refuses to replace a program or library that is running, but lets it be
    renamed (the process keeps running from it): then the target first moves aside
    into the work folder and the new file takes its name. After a crash in between,
    the target is simply missing, and the resumed patch renames the staged file in.
    Only a target that cannot be moved aside either gets `fsutil.replace`'s retries
    (a reader holding it for a moment), so a running program costs no wait.

    Raises:
        StateError: the target can be neither replaced nor moved aside.
    """
    try:
        os.replace(staged, target)
        return
    except PermissionError as e:
        refused = e
    aside.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(target, aside)
    except OSError:
        _replace_when_let(staged, target, refused)
        return
    replace(staged, target)


def _replace_when_let(staged: Path, target: Path, refused: OSError) -> None:
    """Raises: StateError when the target is still held after `fsutil.replace`'s retries."""
    try:
        replace(staged, target)
    except PermissionError:
        raise StateError(
            f"{target} cannot be replaced ({refused.strerror or refused}): a running program "
            "may hold it open; stop that program or its service and apply again"
        ) from None


class _Folders:
    """Creates each folder once per pass (1,000 files share a few dozen folders).

    Safe from several threads: two creating the same folder at once both succeed.
    """

    def __init__(self) -> None:
        self.known: set[Path] = set()

    def ensure(self, folder: Path) -> None:
        if folder not in self.known:
            folder.mkdir(parents=True, exist_ok=True)
            self.known.add(folder)


def _keep_old_inode(target: Path, link: Path, folders: _Folders) -> None:
    """Hard-link the file about to be replaced into the work folder.

    Freeing a file's blocks is the slow part of replacing it (~1–2 ms per file on
    ext4, in the rename itself); with a second link the rename only swaps names,
    and `discard_replaced` frees all the old files at once, in parallel, at the end.
    Where hard links are not possible the rename simply frees the file itself.
    """
    folders.ensure(link.parent)
    # FileExistsError: linked before a crash; FileNotFoundError: a new file; other
    # OSErrors: no hard links here. The rename works the same in every case.
    with contextlib.suppress(OSError):
        os.link(target, link)


def discard_replaced(work: WorkDir) -> None:
    """Free the replaced files' old copies (the backup zip keeps them), several at a time.

    A copy Windows will not delete yet (a program still runs from it) stays until the
    work folder is removed, or the next apply removes the leftover folder.
    """
    if not work.replaced.is_dir():
        return
    files = [p for p in work.replaced.rglob("*") if not p.is_dir()]
    in_parallel(_unlink_if_possible, files)
    shutil.rmtree(work.replaced, ignore_errors=True)


def _unlink_if_possible(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()


def _installed(target: Path, sha256: str) -> bool:
    try:
        return hmac.compare_digest(file_sha256(target), sha256)
    except (FileNotFoundError, IsADirectoryError):
        return False
