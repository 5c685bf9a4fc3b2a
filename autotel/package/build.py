"""Building a signed update package (`autotel publish`), byte for byte reproducibly.

The same inputs give the same zip: entries in name order, every entry with the
same fixed timestamp and attributes, the manifest in its canonical form and a
deterministic RSA-PSS signature (empty salt). So an admin can rebuild a package
and compare checksums, and a site that already holds it recognises a re-send.
Path rules are `autotel.package.paths`, the same ones sites enforce, so publish
refuses what every site would refuse. Choosing which files go in is the CLI's job.
"""

from __future__ import annotations

import hashlib
import zipfile
import zlib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO

from cryptography.hazmat.primitives.asymmetric import rsa

from autotel.crypto.signing import sign_deterministic
from autotel.errors import ConfigError, PackageError
from autotel.fsutil import atomic_writer
from autotel.package.manifest import (
    FILES_PREFIX,
    MANIFEST_NAME,
    MIGRATIONS_PREFIX,
    SIGNATURE_NAME,
    FileEntry,
    Manifest,
    MigrationEntry,
    encode,
    package_file_name,
)

ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip can record
CHUNK = 1024 * 1024
SAMPLE = 256 * 1024


@dataclass(frozen=True)
class Source:
    """One file to package: its name in the manifest and where it is on disk."""

    name: str
    path: Path


@dataclass(frozen=True)
class PackageSpec:
    version: str
    notes: str
    product: str
    created: datetime
    expires: datetime
    files: list[Source]
    migrations: list[Source]


def build_package(spec: PackageSpec, key: rsa.RSAPrivateKey, out_dir: Path) -> Path:
    """Write `out_dir/update_vX.Y.Z.zip` atomically; return its path.

    Raises:
        ConfigError: a source file cannot be read.
        PackageError: a file changed while it was being packaged.
    """
    manifest = Manifest(
        version=spec.version,
        notes=spec.notes,
        product=spec.product,
        created=spec.created,
        expires=spec.expires,
        files=[_file_entry(s) for s in spec.files],
        migrations=[
            MigrationEntry(name=s.name, sha256=_digest(s.path)[0]) for s in spec.migrations
        ],
    )
    raw = encode(manifest)
    members: dict[str, bytes | Path] = {
        MANIFEST_NAME: raw,
        SIGNATURE_NAME: sign_deterministic(key, raw),
    }
    members.update({FILES_PREFIX + s.name: s.path for s in spec.files})
    members.update({MIGRATIONS_PREFIX + s.name: s.path for s in spec.migrations})
    expected = {f.entry_name: f.sha256 for f in manifest.files}
    expected.update({m.entry_name: m.sha256 for m in manifest.migrations})
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / package_file_name(spec.version)
    with atomic_writer(target) as f, zipfile.ZipFile(f, "w") as zf:
        for name in sorted(members):
            content = members[name]
            if isinstance(content, bytes):
                _write_bytes(zf, name, content)
            else:
                _write_file(zf, name, content, expected[name])
    return target


def _file_entry(source: Source) -> FileEntry:
    sha256, size = _digest(source.path)
    return FileEntry(path=source.name, sha256=sha256, size=size)


def _info(name: str, size: int, method: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=ZIP_EPOCH)
    info.create_system = 3  # "Unix" on every OS, so the bytes do not depend on it
    info.external_attr = 0o100644 << 16  # a regular file, rw-r--r--
    info.compress_type = method
    info.file_size = size  # lets zipfile choose zip64 up front
    return info


def _write_bytes(zf: zipfile.ZipFile, name: str, data: bytes) -> None:
    method = zipfile.ZIP_DEFLATED if name == MANIFEST_NAME else zipfile.ZIP_STORED
    with zf.open(_info(name, len(data), method), "w") as out:
        out.write(data)


def _write_file(zf: zipfile.ZipFile, name: str, path: Path, sha256: str) -> None:
    """Copy a file in, hashing it again: it must still be what the manifest says."""
    digest = hashlib.sha256()
    with _open(path) as src:
        size = src.seek(0, 2)
        src.seek(0)
        method = _method_for(src)
        src.seek(0)
        with zf.open(_info(name, size, method), "w") as out:
            while block := src.read(CHUNK):
                digest.update(block)
                out.write(block)
    if digest.hexdigest() != sha256:
        raise PackageError(f"{path} changed while the package was being written; publish again")


def _method_for(src: IO[bytes]) -> int:
    """Deflate what compresses; store what does not (media, archives), which reads faster."""
    sample = src.read(SAMPLE)
    if sample and len(zlib.compress(sample, 1)) > 0.9 * len(sample):
        return zipfile.ZIP_STORED
    return zipfile.ZIP_DEFLATED


def _digest(path: Path) -> tuple[str, int]:
    """(hex SHA-256, size) of a file."""
    digest = hashlib.sha256()
    size = 0
    with _open(path) as f:
        while block := f.read(CHUNK):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


def _open(path: Path) -> IO[bytes]:
    try:
        return open(path, "rb")
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from None
