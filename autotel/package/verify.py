"""`verify_package`: the whole acceptance check of an update package, in one call.

The receive job calls it before anything is kept as pending, and the apply job
calls it again on the stored file, so it holds no state and trusts nothing it
read earlier. Checks, in this order (the first failure is reported):

1. the zip's directory is within the limits (a zip bomb is refused unread);
2. `manifest.sig` verifies over the exact bytes of `manifest.json` with one of
   the site's `trusted_keys`                                   -> SignatureError;
3. every entry is listed, with the listed size and SHA-256, and nothing listed is
   missing (bytes are counted while inflating)                 -> SignatureError;
4. every path is safe, no symlinks, no duplicates             -> PackageError;
5. no protected file; 6. not expired; 7. this site's product  -> PackageError;
8. the version is newer than `installed_version`              -> NotNewerError.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from autotel.config import Config
from autotel.crypto.signing import load_public_keys, verify
from autotel.errors import SignatureError
from autotel.package import rules
from autotel.package.manifest import MANIFEST_NAME, SIGNATURE_NAME, Manifest, decode
from autotel.package.rules import DEFAULT_LIMITS, Limits
from autotel.package.zipread import entry_of, member_sha256, open_zip, read_member
from autotel.timeutil import utcnow

ProgressFn = Callable[[float], None]


def verify_package(
    zip_path: Path,
    config: Config,
    *,
    installed_version: str,
    now: datetime | None = None,
    limits: Limits = DEFAULT_LIMITS,
    source: str | None = None,
    progress: ProgressFn | None = None,
    hashes: bool = True,
) -> Manifest:
    """Check the package at `zip_path` for this site; return its verified manifest.

    `source` names the package in messages (default: the file's name); `progress`
    gets the fraction (0 to 1) of the listed bytes hashed so far. `hashes=False`
    leaves out check 3's hashing (sizes and listing are still checked) for a caller
    that hashes every member itself as it reads it: the apply unpacks the files and
    checks them in one pass instead of inflating 50 MB twice.

    Raises:
        SignatureError: bad or missing signature, tampered, unlisted or missing entry.
        PackageError: zip bomb, unsafe path, protected file, expired, other product.
        NotNewerError: the version is not newer than `installed_version`.
        ConfigError: a configured trusted key cannot be read.
    """
    source = source or Path(zip_path).name
    with open_zip(Path(zip_path), source) as zf:
        infos = zf.infolist()
        entries = [entry_of(i) for i in infos]
        rules.check_limits(source, entries, limits)
        manifest = _signed_manifest(zf, config, source, limits)
        rules.check_listing(source, entries, manifest)
        if hashes:
            _check_hashes(zf, infos, manifest, source, progress)
        rules.check_safe(source, entries, manifest)
    rules.check_protected(source, manifest, site_protected(config))
    rules.check_not_expired(source, manifest, now or utcnow())
    rules.check_product(source, manifest, config.product)
    rules.check_newer(source, manifest, installed_version)
    return manifest


def site_protected(config: Config) -> list[str]:
    """`protected` plus what this site keeps in its install directory wherever it is
    configured: its config file, its trusted keys and its state directory."""
    install = config.install_path
    own = [(config.config_path.resolve(), ""), (config.state.root, "/**")]
    own += [(key, "") for key in config.trusted_key_paths]
    extra = [
        path.relative_to(install).as_posix() + suffix
        for path, suffix in own
        if path.is_relative_to(install) and path != install
    ]
    return [*config.protected, *extra]


def _signed_manifest(zf: zipfile.ZipFile, config: Config, source: str, limits: Limits) -> Manifest:
    raw = read_member(zf, MANIFEST_NAME, limits.max_manifest_bytes, source)
    signature = read_member(zf, SIGNATURE_NAME, limits.max_signature_bytes, source)
    if raw is None:
        raise SignatureError(
            f"{source}: no {MANIFEST_NAME} in the zip; not an autotel update package"
        )
    if signature is None:
        raise SignatureError(f"{source}: no {SIGNATURE_NAME} in the zip; the package is not signed")
    check_signature(source, raw, signature, config.trusted_key_paths)
    return decode(raw, source)


def check_signature(
    source: str, manifest_bytes: bytes, signature: bytes, key_paths: list[Path]
) -> None:
    """Raises: SignatureError unless one of the keys at `key_paths` signed `manifest_bytes`."""
    if not key_paths:
        raise SignatureError(
            f"{source}: this site trusts no admin key (trusted_keys in "
            "autotel.yaml is empty), so no package can be verified"
        )
    if not verify(load_public_keys(key_paths), manifest_bytes, signature):
        raise SignatureError(
            f"{source}: manifest.sig does not verify with the {len(key_paths)} "
            "trusted key(s); the manifest was altered or signed with another key"
        )


def _check_hashes(
    zf: zipfile.ZipFile,
    infos: list[zipfile.ZipInfo],
    manifest: Manifest,
    source: str,
    progress: ProgressFn | None,
) -> None:
    """Hash every listed member (duplicates included), counting bytes as they inflate."""
    wanted: dict[str, tuple[str, int | None]] = {
        f.entry_name: (f.sha256, f.size) for f in manifest.files
    }
    wanted.update({m.entry_name: (m.sha256, None) for m in manifest.migrations})
    total = max(sum(i.file_size for i in infos if i.filename in wanted), 1)
    done = 0
    reported = 0.0

    def advance(n: int) -> None:
        nonlocal done, reported
        done += n
        if progress is not None and done / total - reported >= 0.1:
            reported = done / total
            progress(min(reported, 1.0))

    for info in infos:
        if info.filename not in wanted:
            continue
        sha256, size = wanted[info.filename]
        limit = size if size is not None else info.file_size
        found, _ = member_sha256(zf, info, source, limit=limit, progress=advance)
        if found != sha256:
            raise rules.hash_mismatch(source, info.filename, sha256, found)
