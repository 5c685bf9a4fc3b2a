"""Pure acceptance rules for an update package, checked in the order sites apply them.

Every function here takes plain values (entry descriptions read from the zip's
directory, the parsed manifest, the site's settings, the clock) and raises the
error the agent maps to its answer; none touches the disk. `verify.py` does the
reading and calls these in order.
"""

from __future__ import annotations

import stat
import zipfile
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from autotel.errors import NotNewerError, PackageError, SignatureError, StateError
from autotel.package.manifest import MANIFEST_NAME, SIGNATURE_NAME, Manifest
from autotel.package.paths import check_migration_name, find_duplicate, normalise, protected_match
from autotel.package.semver import Version, parse_version
from autotel.timeutil import iso

MiB = 1024 * 1024
ALLOWED_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)


@dataclass(frozen=True)
class Limits:
    """What a package may expand to; anything beyond is treated as a zip bomb."""

    max_entries: int = 20_000
    max_total_bytes: int = 4 * 1024 * MiB
    max_ratio: float = 200.0  # uncompressed / compressed, per entry ...
    ratio_floor_bytes: int = 1 * MiB  # ... for entries at least this big
    max_manifest_bytes: int = 16 * MiB
    max_signature_bytes: int = 64 * 1024


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True)
class Entry:
    """One member of the zip as its central directory describes it."""

    name: str  # as zipfile decoded it
    raw_name: str  # before zipfile's own clean-up (it turns '\\' into '/' on Windows)
    size: int
    compressed_size: int
    method: int
    encrypted: bool = False
    mode: int = 0  # Unix mode from the external attributes, 0 when absent

    @property
    def is_symlink(self) -> bool:
        return stat.S_ISLNK(self.mode)

    @property
    def is_special(self) -> bool:
        """A device, FIFO or socket: nothing an install directory should receive."""
        kind = stat.S_IFMT(self.mode)
        return kind not in (0, stat.S_IFREG, stat.S_IFDIR, stat.S_IFLNK)


def check_limits(source: str, entries: list[Entry], limits: Limits) -> None:
    """Refuse a zip that would expand beyond the limits, before anything is read from it.

    Raises:
        PackageError: too many entries, too much in total, an entry compressed
            suspiciously well, encrypted entries or an unsupported compression method.
    """
    if len(entries) > limits.max_entries:
        raise PackageError(
            f"{source}: {len(entries)} entries, more than the limit of "
            f"{limits.max_entries}; refusing a possible zip bomb"
        )
    total = sum(e.size for e in entries)
    if total > limits.max_total_bytes:
        raise PackageError(
            f"{source}: expands to {total // MiB} MiB, more than the limit of "
            f"{limits.max_total_bytes // MiB} MiB; refusing a possible zip bomb"
        )
    for e in entries:
        if e.encrypted:
            raise PackageError(
                f"{source}: {e.name} is encrypted; packages are signed, not encrypted"
            )
        if e.method not in ALLOWED_METHODS:
            raise PackageError(
                f"{source}: {e.name} uses compression method {e.method}; "
                "only stored and deflate are accepted"
            )
        ratio = e.size / max(e.compressed_size, 1)
        if e.size >= limits.ratio_floor_bytes and ratio > limits.max_ratio:
            raise PackageError(
                f"{source}: {e.name} expands {ratio:.0f}x ({e.compressed_size} to "
                f"{e.size} bytes), more than {limits.max_ratio:.0f}x; refusing a "
                "possible zip bomb"
            )


def expected_entries(manifest: Manifest) -> dict[str, int | None]:
    """Zip entry name -> expected size (None where the manifest records no size)."""
    expected: dict[str, int | None] = {f.entry_name: f.size for f in manifest.files}
    expected.update({m.entry_name: None for m in manifest.migrations})
    return expected


def check_listing(source: str, entries: list[Entry], manifest: Manifest) -> None:
    """Every entry is listed with the listed size, and nothing listed is missing.

    Hashes are compared while reading (see verify.py); sizes are compared here
    first, so a mismatch is found without decompressing anything.

    Raises:
        SignatureError: an unlisted entry, a missing one, or a size mismatch.
    """
    expected = expected_entries(manifest)
    present = {e.name for e in entries}
    for e in entries:
        if e.name in (MANIFEST_NAME, SIGNATURE_NAME):
            continue
        if e.name not in expected:
            raise SignatureError(
                f"{source}: {e.name} is not listed in the signed manifest; "
                "the package was altered after signing"
            )
        size = expected[e.name]
        if size is not None and size != e.size:
            raise SignatureError(
                f"{source}: {e.name} size mismatch (manifest {size} bytes, "
                f"zip {e.size} bytes); the package was altered after signing"
            )
    missing = sorted(set(expected) - present)
    if missing:
        raise SignatureError(
            f"{source}: {missing[0]} is listed in the manifest but missing from "
            f"the zip ({len(missing)} missing in all); the package is incomplete"
        )


def hash_mismatch(source: str, name: str, expected: str, found: str) -> SignatureError:
    return SignatureError(
        f"{source}: {name} sha256 mismatch (manifest {expected[:12]}…, "
        f"file {found[:12]}…); the package was altered after signing"
    )


def check_safe(source: str, entries: list[Entry], manifest: Manifest) -> None:
    """Every name stays inside the install directory and names one regular file.

    Raises:
        PackageError: a symlink or special entry, an unsafe zip or manifest name,
            or two names that are the same file once normalised (case-insensitively).
    """
    for path in [f.path for f in manifest.files]:
        _safe(source, path)
    for e in entries:
        if e.is_symlink:
            raise PackageError(
                f"{source}: {e.name} is a symbolic link; packages hold regular files only"
            )
        if e.is_special or e.name.endswith("/"):
            raise PackageError(f"{source}: {e.name} is not a regular file")
        _safe(source, e.raw_name)
    counts = Counter(e.raw_name for e in entries)
    twice = [name for name, n in counts.items() if n > 1]
    if twice:
        raise PackageError(f"{source}: {twice[0]} appears {counts[twice[0]]} times in the zip")
    for name in [m.name for m in manifest.migrations]:
        _named(source, check_migration_name, name)
    for kind, names in (
        ("file", [f.path for f in manifest.files]),
        ("migration", [m.name for m in manifest.migrations]),
    ):
        duplicate = find_duplicate(names)
        if duplicate:
            raise PackageError(
                f"{source}: {kind} paths {duplicate[0]!r} and {duplicate[1]!r} name "
                "the same file (compared case-insensitively, as Windows does)"
            )


def _safe(source: str, path: str) -> None:
    _named(source, normalise, path)


def _named(source: str, check: Callable[[str], object], value: str) -> None:
    """Run a path rule, prefixing its message with the package's name."""
    try:
        check(value)
    except PackageError as e:
        raise PackageError(f"{source}: {e}") from None


def check_protected(source: str, manifest: Manifest, patterns: Iterable[str]) -> None:
    """Raises: PackageError naming the first file a site never lets a package replace."""
    patterns = list(patterns)
    for entry in manifest.files:
        pattern = protected_match(entry.path, patterns)
        if pattern is not None:
            raise PackageError(
                f"{source}: {entry.path} is protected (pattern {pattern!r} in "
                "`protected`); a package may never replace it"
            )


def check_not_expired(source: str, manifest: Manifest, now: datetime) -> None:
    """Raises: PackageError when the package's expiry time has passed."""
    if manifest.expires <= now:
        raise PackageError(
            f"{source}: expired at {iso(manifest.expires)} (now {iso(now)}); "
            "publish it again with a later --expires"
        )


def check_product(source: str, manifest: Manifest, product: str) -> None:
    """Raises: PackageError when the package was published for another product."""
    if manifest.product != product:
        raise PackageError(
            f"{source}: made for product {manifest.product!r}, this site runs {product!r}"
        )


def check_newer(source: str, manifest: Manifest, installed: str) -> None:
    """Raises: NotNewerError unless the package's version is newer than `installed`."""
    current = installed_semver(installed)
    if not manifest.semver > current:
        raise NotNewerError(
            f"{source}: version {manifest.version} is not newer than the installed "
            f"{current}; publish a higher version"
        )


def installed_semver(installed: str) -> Version:
    """Raises: StateError when the site's own version.txt is not a semantic version."""
    try:
        return parse_version(installed)
    except ValueError as e:
        raise StateError(f"the installed version in version.txt is not valid: {e}") from None
