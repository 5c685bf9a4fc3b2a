"""Reopening the verified package in the later steps.

`verify` checks the package completely (`autotel.package.verify`) and records the
SHA-256 of its manifest. The steps after it read the package again, possibly after
a crash and a restart; they trust its manifest only if it still hashes to that
value, and each file or migration they take from it is checked against the
manifest's hash as it is read.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from autotel.errors import PackageError, SignatureError
from autotel.package.manifest import MANIFEST_NAME, Manifest, decode
from autotel.package.rules import Limits
from autotel.package.zipread import open_zip, read_member

CHUNK = 1 << 20


@dataclass
class OpenPackage:
    path: Path
    zip: zipfile.ZipFile
    manifest: Manifest


def manifest_sha256(path: Path, verified: Manifest) -> str:
    """SHA-256 of the package's manifest.json bytes, which must say what `verified` says.

    Raises:
        SignatureError: the manifest changed since `verify_package` read it.
    """
    with _open_zip(path) as archive:
        raw = _manifest_bytes(archive, path)
    if decode(raw, path.name) != verified:
        raise SignatureError(f"{path.name}: manifest.json changed while the package was verified")
    return hashlib.sha256(raw).hexdigest()


@contextlib.contextmanager
def open_package(path: Path, manifest_sha256: str) -> Iterator[OpenPackage]:
    """The confirmed package, trusted through its manifest's hash.

    The later steps use the manifest (paths, hashes, migration names) and check each
    file's bytes against it where they use them, so the manifest is what is re-checked.

    Raises:
        PackageError: the package is missing or unreadable.
        SignatureError: its manifest is not the one verified.
    """
    with _open_zip(path) as archive:
        raw = _manifest_bytes(archive, path)
        found = hashlib.sha256(raw).hexdigest()
        if not hmac.compare_digest(found, manifest_sha256):
            raise SignatureError(
                f"{path.name}: manifest.json changed since the package was verified "
                f"(sha256 was {manifest_sha256[:12]}…, now {found[:12]}…)"
            )
        yield OpenPackage(path, archive, decode(raw, path.name))


def _open_zip(path: Path) -> zipfile.ZipFile:
    if not path.is_file():
        raise PackageError(f"the update package {path} is missing; it was there when this "
                           "apply began")
    return open_zip(path, path.name)


def _manifest_bytes(archive: zipfile.ZipFile, path: Path) -> bytes:
    raw = read_member(archive, MANIFEST_NAME, Limits.max_manifest_bytes, path.name)
    if raw is None:
        raise SignatureError(f"{path.name}: manifest.json is gone from the package")
    return raw
