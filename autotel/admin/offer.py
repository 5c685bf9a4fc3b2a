"""What an update package announces when `autotel push --update` delivers it.

Only the two headers `POST /update` needs are read here (the version from
`manifest.json`, the raw `manifest.sig` as base64): the site verifies the package
itself, and the admin's `autotel publish` made it. Reading them before the session
starts means a wrong `--update` path fails before anything is exported.
"""

from __future__ import annotations

import base64
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

from autotel.errors import ConfigError, PackageError
from autotel.package.zipread import file_sha256

MAX_MANIFEST_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class UpdateOffer:
    path: Path
    version: str
    signature_b64: str
    size: int
    sha256: str  # names the package to the agent, so a broken upload can be resumed

    @classmethod
    def from_zip(cls, path: Path) -> UpdateOffer:
        """Raises: ConfigError (no such file), PackageError (not an update package)."""
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"--update {path}: file not found")
        try:
            with zipfile.ZipFile(path) as package:
                manifest = _small_entry(package, "manifest.json")
                signature = _small_entry(package, "manifest.sig")
        except (zipfile.BadZipFile, OSError) as e:
            raise PackageError(
                f"{path}: not a readable zip ({e}); make it with autotel publish"
            ) from e
        return cls(
            path,
            _version(path, manifest),
            base64.b64encode(signature).decode("ascii"),
            path.stat().st_size,
            file_sha256(path),
        )


def _small_entry(package: zipfile.ZipFile, name: str) -> bytes:
    try:
        info = package.getinfo(name)
    except KeyError as e:
        raise PackageError(
            f"{package.filename}: no {name}; make the package with autotel publish"
        ) from e
    if info.file_size > MAX_MANIFEST_BYTES:
        raise PackageError(
            f"{package.filename}: {name} is implausibly large ({info.file_size} bytes)"
        )
    return package.read(info)


def _version(path: Path, manifest: bytes) -> str:
    try:
        version = json.loads(manifest)["version"]
    except (ValueError, KeyError, TypeError) as e:
        raise PackageError(f"{path}: manifest.json has no readable version ({e})") from e
    if not isinstance(version, str) or not version:
        raise PackageError(f"{path}: manifest.json version must be a string, got {version!r}")
    return version
