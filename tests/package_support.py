"""Building update packages for tests, good ones and every kind of bad one.

`craft()` writes a zip from plain values: the manifest is computed from the
files, then `manifest` overrides are applied, and it is signed with the given key
(or carries the given signature bytes). Members can be added, dropped or given
raw `ZipInfo`s, so each test builds exactly the attack it is about.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import shutil
import warnings
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa

from autotel.crypto.signing import load_private_key, sign_deterministic
from autotel.timeutil import iso

Member = tuple[zipfile.ZipInfo | str, bytes]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def manifest_dict(
    files: dict[str, bytes], migrations: dict[str, bytes] | None = None, /, **overrides: Any
) -> dict[str, Any]:
    now = datetime.now(UTC).replace(microsecond=0)
    data: dict[str, Any] = {
        "version": "1.2.0",
        "notes": "Додано журнал тривог.",
        "created": iso(now),
        "expires": iso(now + timedelta(days=90)),
        "product": "autotel",
        "files": [{"path": p, "sha256": sha(b), "size": len(b)} for p, b in sorted(files.items())],
        "migrations": [
            {"name": n, "sha256": sha(b)} for n, b in sorted((migrations or {}).items())
        ],
    }
    data.update(overrides)
    return data


def write_zip(path: Path, members: Iterable[Member]) -> Path:
    with warnings.catch_warnings(), zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        warnings.simplefilter("ignore")  # duplicate names are some tests' point
        for info, data in members:
            zf.writestr(info, data)
    return path


def craft(
    path: Path,
    key: Path | None,
    files: dict[str, bytes],
    *,
    migrations: dict[str, bytes] | None = None,
    manifest: dict[str, Any] | None = None,
    signature: bytes | None = None,
    entries: dict[str, bytes] | None = None,
    extra: Sequence[Member] = (),
    drop: Sequence[str] = (),
) -> Path:
    """A package at `path`. `entries` replaces the zip's file members (default: `files`
    under `files/`); the manifest still describes `files`. Signed with `key` unless
    `signature` is given. `drop` removes generated members; `extra` ones are added after."""
    raw = json.dumps(
        manifest_dict(files, migrations, **(manifest or {})), ensure_ascii=False, indent=2
    ).encode("utf-8")
    if signature is None:
        assert key is not None
        signature = sign_deterministic(_key(key), raw)
    members: list[Member] = [("manifest.json", raw), ("manifest.sig", signature)]
    zipped = entries if entries is not None else {f"files/{p}": b for p, b in files.items()}
    members += list(zipped.items())
    members += [(f"migrations/{n}", b) for n, b in (migrations or {}).items()]
    kept = [m for m in members if _name(m[0]) not in drop]
    return write_zip(path, [*kept, *extra])


@functools.lru_cache(maxsize=8)
def _key(path: Path) -> rsa.RSAPrivateKey:
    """Loading checks the RSA key, which takes a good part of a second: once per key."""
    return load_private_key(path)


def _name(info: zipfile.ZipInfo | str) -> str:
    return info.filename if isinstance(info, zipfile.ZipInfo) else info


def symlink_info(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = 0o120777 << 16
    return info


def member(zip_path: Path, name: str) -> bytes:
    with zipfile.ZipFile(zip_path) as zf:
        return zf.read(name)


def signature_b64(zip_path: Path) -> str:
    return base64.b64encode(member(zip_path, "manifest.sig")).decode("ascii")


@dataclass
class Upload:
    """A package dropped into a site's incoming folder, as the agent leaves it."""

    path: Path
    version: str
    signature: str

    def params(self) -> dict[str, str]:
        return {
            "upload": str(self.path),
            "version": self.version,
            "signature": self.signature,
            "peer_ip": "127.0.0.1",
        }


def stage_upload(
    incoming: Path, package: Path, *, version: str | None = None, signature: str | None = None
) -> Upload:
    """Copy `package` into `incoming` under an upload name; headers default to the package's."""
    incoming.mkdir(parents=True, exist_ok=True)
    target = incoming / f"upload-{sha(package.read_bytes())[:8]}-{package.stem}.zip"
    shutil.copyfile(package, target)
    if version is None:
        try:
            version = json.loads(member(package, "manifest.json"))["version"]
        except (KeyError, ValueError, zipfile.BadZipFile):
            version = "1.2.0"
    if signature is None:
        try:
            signature = signature_b64(package)
        except (KeyError, zipfile.BadZipFile):
            signature = ""
    return Upload(target, str(version), signature)


def tree(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under `folder` with its size and mtime: to prove nothing changed."""
    if not folder.exists():
        return {}
    return {
        p.relative_to(folder).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }
