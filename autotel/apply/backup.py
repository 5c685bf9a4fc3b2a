"""The backup of an apply: `state/backups/backup_v<old>_<stamp>.zip`.

It holds every file the update replaces (stored, not compressed: compressing
doubles the time of an apply and saves little on already-compressed files) under
`files/<path>`, with its permissions, and `backup.json`: the versions, the files
and folders the update will create (to remove on rollback) and which of the
package's migrations the database did not have yet. It is written atomically, in
one pass (`autotel.apply.storedzip`); before it is used it is checked whole, every
entry against its CRC-32, which is what catches a damaged disk block.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import stat
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from isal import isal_zlib

from autotel.apply.durable import fsync_dirs
from autotel.apply.package import CHUNK
from autotel.apply.plan import ApplyPlan, backups_to_prune
from autotel.apply.storedzip import StoredZipWriter
from autotel.apply.targets import InstallDir
from autotel.errors import StateError
from autotel.fsutil import atomic_writer, fsync_dir

INDEX = "backup.json"
FILES = "files/"
FORMAT = 2


@dataclass(frozen=True)
class BackupIndex:
    from_version: str
    to_version: str
    replaced: tuple[str, ...]
    created: tuple[str, ...]
    created_dirs: tuple[str, ...]
    new_migrations: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "from_version": self.from_version,
                "to_version": self.to_version, "replaced": list(self.replaced),
                "created": list(self.created), "created_dirs": list(self.created_dirs),
                "new_migrations": list(self.new_migrations)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BackupIndex:
        if data.get("format") != FORMAT:
            raise ValueError(f"format {data.get('format')!r}, expected {FORMAT}")
        return cls(data["from_version"], data["to_version"], tuple(data["replaced"]),
                   tuple(data["created"]), tuple(data["created_dirs"]),
                   tuple(data["new_migrations"]))


def write_backup(path: Path, install: InstallDir, plan: ApplyPlan, from_version: str,
                 to_version: str, new_migrations: list[str]) -> None:
    """Write the backup atomically (it appears whole, flushed to disk, or not at all)."""
    index = BackupIndex(from_version, to_version, plan.replaced, plan.created,
                        plan.created_dirs, tuple(new_migrations))
    with atomic_writer(path) as out:
        archive = StoredZipWriter(out)
        for rel in plan.replaced:  # only read, and checked by install.plan moments ago
            archive.add_file(install.root / rel, FILES + rel)
        archive.add_bytes(INDEX, json.dumps(index.to_json(), ensure_ascii=False,
                                            indent=1).encode("utf-8"))
        archive.close()


def prune(folder: Path, keep: int, current: str) -> list[str]:
    """Delete all but the newest `keep` backups, never `current`; return the names deleted."""
    others = (p.name for p in folder.iterdir() if p.name != current)
    doomed = backups_to_prune(others, keep - 1)
    for name in doomed:
        with contextlib.suppress(FileNotFoundError):
            (folder / name).unlink()
    if doomed:
        fsync_dir(folder)
    return doomed


def check_backup(path: Path) -> BackupIndex:
    """Read the backup's index after checking every entry against its CRC-32.

    Raises:
        StateError: the backup is missing, damaged or unreadable.
    """
    with _zip(path) as archive:
        try:
            bad = archive.testzip()
        except (OSError, zipfile.BadZipFile, EOFError) as e:
            raise StateError(f"the backup {path} cannot be read ({e})") from None
        if bad is not None:
            raise StateError(f"the backup {path} is damaged: {bad} does not match its CRC-32")
        return _index(archive, path)


def restore(path: Path, index: BackupIndex, install: InstallDir,
            after_each: Callable[[int], None] = lambda n: None) -> tuple[int, int]:
    """Put back every replaced file that differs and remove every created one.

    `index` comes from `check_backup(path)`: the caller checks the whole backup
    first, so a damaged one restores nothing. Idempotent: a file already equal to
    its backup (size and CRC-32) is left alone, a created file already gone is
    fine, so a rollback interrupted by a crash is simply run again. Returns (files
    restored, files removed).

    Raises:
        StateError: the backup is missing or unreadable.
    """
    with _zip(path) as archive:
        restored = 0
        for rel in index.replaced:
            info = archive.getinfo(FILES + rel)
            target = install.target(rel)
            if _matches(target, info):
                continue
            _restore_file(archive, info, target)
            restored += 1
            after_each(restored)
    return restored, _remove_created(install, index)


def _restore_file(archive: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    mode = stat.S_IMODE(info.external_attr >> 16) or None
    with archive.open(info) as src, atomic_writer(target, mode) as dst:
        shutil.copyfileobj(src, dst, CHUNK)


def _remove_created(install: InstallDir, index: BackupIndex) -> int:
    removed = 0
    touched: set[Path] = set()
    for rel in index.created:
        target = install.target(rel)
        with contextlib.suppress(FileNotFoundError):
            target.unlink()
            removed += 1
            touched.add(target.parent)
    for rel in reversed(index.created_dirs):
        folder = install.root / rel
        with contextlib.suppress(OSError):  # not empty (the site put something there) or gone
            folder.rmdir()
            touched.add(folder.parent)
    fsync_dirs(p for p in touched if p.is_dir())
    return removed


def _matches(target: Path, info: zipfile.ZipInfo) -> bool:
    """The file at `target` has the backed-up size and CRC-32 (so it is already restored)."""
    try:
        if target.stat().st_size != info.file_size:
            return False
        crc = 0
        with open(target, "rb") as f:
            while block := f.read(CHUNK):
                crc = isal_zlib.crc32(block, crc)
        return crc == info.CRC
    except (FileNotFoundError, IsADirectoryError):
        return False


@contextlib.contextmanager
def _zip(path: Path) -> Iterator[zipfile.ZipFile]:
    try:
        archive = zipfile.ZipFile(path)
    except FileNotFoundError:
        raise StateError(f"the backup {path} is missing; it was written when this apply "
                         "began") from None
    except (OSError, zipfile.BadZipFile) as e:
        raise StateError(f"the backup {path} is not a readable zip ({e})") from None
    with archive:
        yield archive


def _index(archive: zipfile.ZipFile, path: Path) -> BackupIndex:
    try:
        return BackupIndex.from_json(json.loads(archive.read(INDEX)))
    except (KeyError, ValueError, TypeError) as e:
        raise StateError(f"the backup {path} has no readable {INDEX} ({e})") from None
