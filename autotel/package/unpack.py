"""Taking a package's migrations out as text, each re-checked by hash.

For the apply job, after `verify_package` accepted the stored zip: every byte is
hashed again as it is read, against the manifest `verify_package` returned, so a
migration swapped after verifying is caught, not run. (The files are unpacked by
`autotel.apply.install.stage`, which checks them the same way.)
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from autotel.errors import PackageError
from autotel.package.manifest import Manifest
from autotel.package.rules import check_listing, hash_mismatch
from autotel.package.zipread import entry_of, open_zip, stream


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
