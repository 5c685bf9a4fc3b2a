"""The pending update: a verified package waiting for the operator.

`state/pending_update/update_vX.Y.Z.zip` and `meta.json` (version, notes,
received_at, sha256). `meta.json` is the commit point: a package is pending once
its meta.json names it, and no longer once meta.json is gone. So storing moves the
zip in first and writes meta.json atomically last, and clearing removes meta.json
first; a crash in between leaves at worst a stray zip that the next store removes.

Readers get the stored zip re-checked against meta.json's sha256 when they ask
(apply does; the portal's status poll does not need to hash hundreds of MB).
Which package may replace which is decided by `decide`, a pure function.
"""

from __future__ import annotations

import contextlib
import errno
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from autotel.errors import NotNewerError, StateError
from autotel.fsutil import atomic_write_json, atomic_writer, fsync_dir, replace
from autotel.package.manifest import Manifest, package_file_name
from autotel.package.semver import parse_version
from autotel.package.zipread import file_sha256
from autotel.state import StatePaths
from autotel.timeutil import now_iso

META_NAME = "meta.json"


@dataclass(frozen=True)
class PendingUpdate:
    version: str
    notes: str
    received_at: str
    sha256: str
    path: Path


@dataclass(frozen=True)
class StoreResult:
    pending: PendingUpdate
    changed: bool  # False: this very package was pending already
    replaced: str | None = None  # the version it replaced, if any


def read_pending(paths: StatePaths, *, verify_sha256: bool = False) -> PendingUpdate | None:
    """The pending update, or None when there is none (or its zip is gone).

    Raises:
        StateError: meta.json is unreadable, or (with `verify_sha256`) the stored
            zip's SHA-256 is not the one recorded when it was received.
    """
    meta_path = paths.pending / META_NAME
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        pending = PendingUpdate(
            version=str(meta["version"]),
            notes=str(meta.get("notes", "")),
            received_at=str(meta["received_at"]),
            sha256=str(meta["sha256"]),
            path=paths.pending / package_file_name(str(meta["version"])),
        )
        parse_version(pending.version)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise StateError(
            f"{meta_path}: unreadable pending-update record ({e}); ask the admin to "
            "send the update again"
        ) from None
    if not pending.path.is_file():
        return None
    if verify_sha256:
        found = file_sha256(pending.path)
        if found != pending.sha256:
            raise StateError(
                f"{pending.path}: sha256 {found[:12]}… differs from {pending.sha256[:12]}… "
                "recorded when it was received; the stored package was altered"
            )
    return pending


def decide(pending: PendingUpdate | None, version: str, sha256: str) -> bool:
    """Whether a verified package (`version`, `sha256`) should replace what is pending.

    False: it is the pending package already (a re-send changes nothing).

    Raises:
        NotNewerError: the same version with other content, or an older version, is
            offered while a package is pending; the admin must publish a higher one.
    """
    if pending is None:
        return True
    offered, current = parse_version(version), parse_version(pending.version)
    if offered == current and pending.sha256 == sha256:
        return False
    if offered == current:
        raise NotNewerError(
            f"version {version} is already pending with other content (sha256 "
            f"{pending.sha256[:12]}…, this one {sha256[:12]}…); publish a higher version"
        )
    if offered < current:
        raise NotNewerError(f"version {pending.version} is already pending, newer than {version}")
    return True


def store_pending(paths: StatePaths, upload: Path, manifest: Manifest, sha256: str) -> StoreResult:
    """Keep a verified package as the pending update, moving `upload` in.

    A re-send of the pending package changes nothing (the upload stays where it
    is, for the caller to delete); a newer package replaces the pending one.

    Raises:
        NotNewerError: see `decide`.
        StateError: the current record is unreadable.
    """
    current = _current(paths, sha256)
    if not decide(current, manifest.version, sha256):
        assert current is not None
        return StoreResult(current, changed=False)
    paths.pending.mkdir(parents=True, exist_ok=True)
    target = paths.pending / manifest.zip_name
    _move(upload, target)
    atomic_write_json(
        paths.pending / META_NAME,
        {
            "version": manifest.version,
            "notes": manifest.notes,
            "received_at": now_iso(),
            "sha256": sha256,
        },
    )
    _remove_strays(paths, keep=target.name)
    stored = read_pending(paths)
    assert stored is not None
    return StoreResult(stored, changed=True, replaced=current.version if current else None)


def clear_pending(paths: StatePaths, *, only_sha256: str | None = None) -> bool:
    """Forget the pending update (after it was applied). Return whether one was cleared.

    With `only_sha256`, clear only if the pending package is still that one: a newer
    package may have arrived while the older one was being applied.
    """
    meta = paths.pending / META_NAME
    if only_sha256 is not None:
        pending = _readable(paths)
        if pending is None or pending.sha256 != only_sha256:
            return False
    if not paths.pending.is_dir():
        return False
    existed = meta.exists()
    meta.unlink(missing_ok=True)
    fsync_dir(paths.pending)
    _remove_strays(paths, keep=None)
    return existed


def _current(paths: StatePaths, sha256: str) -> PendingUpdate | None:
    """The pending update as a base for replacing it: a damaged one counts as none.

    Its zip is hashed only when its recorded sha256 is `sha256` (a re-send, or the
    package just applied): only then does the answer depend on the stored bytes.
    """
    pending = _readable(paths)
    if pending is not None and pending.sha256 == sha256 and file_sha256(pending.path) != sha256:
        return None
    return pending


def _readable(paths: StatePaths) -> PendingUpdate | None:
    try:
        return read_pending(paths)
    except StateError:
        return None


def _move(upload: Path, target: Path) -> None:
    """Rename into place (the upload is on the same disk); copy when it is not."""
    try:
        replace(upload, target)
    except OSError as e:
        if e.errno != errno.EXDEV:
            raise
        with open(upload, "rb") as src, atomic_writer(target) as out:
            shutil.copyfileobj(src, out, 1024 * 1024)
        upload.unlink()
    fsync_dir(target.parent)


def _remove_strays(paths: StatePaths, keep: str | None) -> None:
    """Remove package zips and temporary files that meta.json does not name."""
    for item in paths.pending.iterdir():
        if item.name != META_NAME and item.name != keep and item.is_file():
            with contextlib.suppress(FileNotFoundError):
                item.unlink()
