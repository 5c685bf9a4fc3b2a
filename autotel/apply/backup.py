"""The backup of an apply: `state/backups/backup_v<old>_<stamp>.zip`.

It holds every file the update replaces (stored, not compressed: compressing
doubles the time of an apply and saves little on already-compressed files) under
`files/<path>`, with its permissions, and `backup.json`: the versions, the SHA-256
of each backed-up file, the files and folders the update will create (to remove
on rollback) and which of the package's migrations the database did not have yet.
It is written atomically and re-checked by its SHA-256 before it is used.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import shutil
import stat
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from autotel.apply.durable import fsync_dirs
from autotel.apply.package import CHUNK, open_checked
from autotel.apply.plan import ApplyPlan, backups_to_prune
from autotel.apply.targets import InstallDir
from autotel.errors import StateError
from autotel.fsutil import atomic_writer, fsync_dir
from autotel.package.zipread import file_sha256

INDEX = "backup.json"
FILES = "files/"


@dataclass(frozen=True)
class BackupIndex:
    from_version: str
    to_version: str
    replaced: dict[str, str]  # path -> sha256 of the old file
    created: tuple[str, ...]
    created_dirs: tuple[str, ...]
    new_migrations: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"format": 1, "from_version": self.from_version, "to_version": self.to_version,
                "replaced": self.replaced, "created": list(self.created),
                "created_dirs": list(self.created_dirs),
                "new_migrations": list(self.new_migrations)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BackupIndex:
        return cls(data["from_version"], data["to_version"], dict(data["replaced"]),
                   tuple(data["created"]), tuple(data["created_dirs"]),
                   tuple(data["new_migrations"]))


def write_backup(path: Path, install: InstallDir, plan: ApplyPlan, from_version: str,
                 to_version: str, new_migrations: list[str]) -> str:
    """Write the backup atomically; return its SHA-256 (taken as it is written)."""
    hashes: dict[str, str] = {}
    with atomic_writer(path) as out:
        stream = _HashingWriter(out)
        with zipfile.ZipFile(stream, "w", zipfile.ZIP_STORED) as archive:
            for rel in plan.replaced:  # only read, and checked by install.plan moments ago
                hashes[rel] = _add_file(archive, install.root / rel, FILES + rel)
            index = BackupIndex(from_version, to_version, hashes, plan.created,
                                plan.created_dirs, tuple(new_migrations))
            archive.writestr(INDEX, json.dumps(index.to_json(), ensure_ascii=False, indent=1))
    return stream.digest.hexdigest()


class _HashingWriter:
    """A write-only stream that hashes what passes through.

    It cannot seek, so zipfile writes each entry's sizes after its data (a data
    descriptor) instead of going back to patch the header, and every byte is
    hashed exactly once, in order: no second pass over the finished zip.
    """

    def __init__(self, out: IO[bytes]) -> None:
        self.out = out
        self.digest = hashlib.sha256()
        self.position = 0

    def write(self, data: bytes) -> int:
        self.out.write(data)
        self.digest.update(data)
        self.position += len(data)
        return len(data)

    def tell(self) -> int:
        return self.position

    def seek(self, *args: object) -> int:
        raise io.UnsupportedOperation("the backup is written front to back")

    def flush(self) -> None:
        self.out.flush()

    def close(self) -> None:
        """Nothing to do: `atomic_writer` owns, syncs and closes the file."""


def _add_file(archive: zipfile.ZipFile, source: Path, name: str) -> str:
    info = zipfile.ZipInfo.from_file(source, name)
    info.compress_type = zipfile.ZIP_STORED
    digest = hashlib.sha256()
    with open(source, "rb") as src, archive.open(info, "w") as dst:
        while chunk := src.read(CHUNK):
            digest.update(chunk)
            dst.write(chunk)
    return digest.hexdigest()


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


def read_index(path: Path, sha256: str) -> BackupIndex:
    """Raises: StateError / SignatureError when the backup is missing, changed or unreadable."""
    with open_checked(path, sha256, "the backup") as stream, _zip(stream, path) as archive:
        return _index(archive, path)


def restore(path: Path, sha256: str, install: InstallDir,
            after_each: Callable[[int], None] = lambda n: None) -> tuple[BackupIndex, int, int]:
    """Put back every replaced file that differs and remove every created one.

    Idempotent: a file already equal to its backup is left alone, a created file
    already gone is fine, so a rollback interrupted by a crash is simply run again.
    Returns (index, files restored, files removed).

    Raises:
        StateError / SignatureError: the backup is missing, changed or unreadable.
    """
    with open_checked(path, sha256, "the backup") as stream, _zip(stream, path) as archive:
        index = _index(archive, path)
        restored = 0
        for rel, old_sha256 in index.replaced.items():
            target = install.target(rel)
            if _matches(target, old_sha256):
                continue
            _restore_file(archive, archive.getinfo(FILES + rel), target)
            restored += 1
            after_each(restored)
    removed = _remove_created(install, index)
    return index, restored, removed


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


def _matches(target: Path, sha256: str) -> bool:
    try:
        return file_sha256(target) == sha256
    except (FileNotFoundError, IsADirectoryError):
        return False


@contextlib.contextmanager
def _zip(stream: IO[bytes], path: Path) -> Any:
    try:
        archive = zipfile.ZipFile(stream)
    except zipfile.BadZipFile as e:
        raise StateError(f"the backup {path} is not a readable zip ({e})") from None
    with archive:
        yield archive


def _index(archive: zipfile.ZipFile, path: Path) -> BackupIndex:
    try:
        return BackupIndex.from_json(json.loads(archive.read(INDEX)))
    except (KeyError, ValueError, TypeError) as e:
        raise StateError(f"the backup {path} has no readable {INDEX} ({e})") from None
