"""Taking verified content out of a package: files into a folder, migrations as text.

For the apply job, after `verify_package` accepted the stored zip. Every byte is
hashed again as it is written, against the manifest `verify_package` returned,
so a file swapped between verifying and unpacking is caught, not installed.
Paths go through the same rules as at receive time and must land inside `dest`.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from autotel.errors import PackageError
from autotel.fsutil import atomic_writer
from autotel.package.manifest import Manifest
from autotel.package.paths import normalise
from autotel.package.rules import check_listing, hash_mismatch
from autotel.package.zipread import entry_of, open_zip, stream


def extract_files(zip_path: Path, manifest: Manifest, dest: Path) -> list[Path]:
    """Write each file of `manifest` to `dest/<path>` (atomically each); return the paths.

    `dest` should be a fresh staging folder: on an error some files may already be
    there, and the caller discards the folder.

    Raises:
        SignatureError: a file is missing or its bytes no longer match the manifest.
        PackageError: a path is unsafe or would land outside `dest` (through a link).
    """
    source = Path(zip_path).name
    dest.mkdir(parents=True, exist_ok=True)
    root = dest.resolve()
    written = []
    with open_zip(Path(zip_path), source) as zf:
        check_listing(source, [entry_of(i) for i in zf.infolist()], manifest)
        for entry in manifest.files:
            parts = normalise(entry.path).split("/")
            _make_folders(root, parts[:-1], source, entry.path)
            target = root.joinpath(*parts)
            if target.is_symlink() or target.is_dir():
                raise PackageError(
                    f"{source}: {entry.path} would be written outside {root} "
                    "(a link or folder is in the way)"
                )
            digest = hashlib.sha256()
            with atomic_writer(target) as out:
                for block in stream(zf, zf.getinfo(entry.entry_name), source, limit=entry.size):
                    digest.update(block)
                    out.write(block)
                if digest.hexdigest() != entry.sha256:
                    raise hash_mismatch(source, entry.entry_name, entry.sha256, digest.hexdigest())
            written.append(target)
    return written


def _make_folders(root: Path, folders: list[str], source: str, path: str) -> None:
    """Create `root/<folders...>` one level at a time, refusing links out of `root`."""
    current = root
    for name in folders:
        current = current / name
        if current.is_symlink() or (current.exists() and not current.is_dir()):
            raise PackageError(
                f"{source}: {path} would be written outside {root} ({current} is a link or a file)"
            )
        current.mkdir(exist_ok=True)


def read_migrations(
    zip_path: Path, manifest: Manifest, *, max_bytes: int = 64 * 1024 * 1024
) -> list[tuple[str, str]]:
    """(name, SQL text) of each migration, in name order, each re-checked by hash.

    Raises:
        SignatureError: a migration's bytes no longer match the manifest.
        PackageError: a migration is not UTF-8 or is larger than `max_bytes`.
    """
    source = Path(zip_path).name
    out = []
    with open_zip(Path(zip_path), source) as zf:
        check_listing(source, [entry_of(i) for i in zf.infolist()], manifest)
        for entry in sorted(manifest.migrations, key=lambda m: m.name):
            raw = b"".join(stream(zf, zf.getinfo(entry.entry_name), source, limit=max_bytes))
            found = hashlib.sha256(raw).hexdigest()
            if found != entry.sha256:
                raise hash_mismatch(source, entry.entry_name, entry.sha256, found)
            try:
                out.append((entry.name, raw.decode("utf-8")))
            except UnicodeDecodeError as e:
                raise PackageError(
                    f"{source}: {entry.entry_name} is not UTF-8 text ({e})"
                ) from None
    return out
