"""The signed manifest of an update package: its model and its exact bytes.

`manifest.json` is what `manifest.sig` signs, so the bytes written by `encode` are
the contract, not the model: they are produced once, in one canonical form
(fixed key order, files sorted by path, migrations by name, UTF-8, LF), and sites
verify the bytes they received before parsing them. Unknown keys are ignored, so
a newer publisher may add fields without breaking older sites; the signature
still covers them.
"""

from __future__ import annotations

import json
import re
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from autotel.errors import PackageError
from autotel.package.semver import Version, parse_version
from autotel.timeutil import iso, parse_iso

MANIFEST_NAME = "manifest.json"
SIGNATURE_NAME = "manifest.sig"
FILES_PREFIX = "files/"
MIGRATIONS_PREFIX = "migrations/"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class _Entry(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    @field_validator("sha256", check_fields=False)
    @classmethod
    def _lower_hex(cls, value: str) -> str:
        if not _SHA256.match(value):
            raise ValueError("expected 64 lowercase hex digits")
        return value


class FileEntry(_Entry):
    path: str = Field(min_length=1)
    sha256: str
    size: int = Field(ge=0)

    @property
    def entry_name(self) -> str:
        """Where the file sits in the zip."""
        return FILES_PREFIX + self.path


class MigrationEntry(_Entry):
    name: str = Field(min_length=1)
    sha256: str

    @property
    def entry_name(self) -> str:
        return MIGRATIONS_PREFIX + self.name


class Manifest(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    version: str
    notes: str = ""
    created: datetime
    expires: datetime
    product: str = Field(min_length=1)
    files: list[FileEntry] = []
    migrations: list[MigrationEntry] = []

    @field_validator("version")
    @classmethod
    def _semantic(cls, value: str) -> str:
        parse_version(value)
        return value

    @field_validator("created", "expires", mode="before")
    @classmethod
    def _utc(cls, value: object) -> object:
        return parse_iso(value) if isinstance(value, str) else value

    @property
    def semver(self) -> Version:
        return parse_version(self.version)

    @property
    def zip_name(self) -> str:
        return package_file_name(self.version)

    @property
    def total_size(self) -> int:
        return sum(f.size for f in self.files)


def package_file_name(version: str) -> str:
    return f"update_v{version}.zip"


def encode(manifest: Manifest) -> bytes:
    """The canonical bytes of `manifest`: what publish writes and signs."""
    data = {
        "version": manifest.version,
        "notes": manifest.notes,
        "created": iso(manifest.created),
        "expires": iso(manifest.expires),
        "product": manifest.product,
        "files": [f.model_dump() for f in sorted(manifest.files, key=lambda f: f.path)],
        "migrations": [m.model_dump() for m in sorted(manifest.migrations, key=lambda m: m.name)],
    }
    return (json.dumps(data, ensure_ascii=False, indent=2) + "\n").encode("utf-8")


def decode(raw: bytes, source: str) -> Manifest:
    """Parse manifest bytes (already signature-checked).

    Raises:
        PackageError: not UTF-8 JSON, or a field is missing or invalid; the message
            lists each problem, since a signed but malformed manifest is a publisher bug.
    """
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise PackageError(f"{source}: manifest.json is not valid UTF-8 JSON ({e})") from None
    if not isinstance(data, dict):
        raise PackageError(
            f"{source}: manifest.json must hold an object, found {type(data).__name__}"
        )
    try:
        return Manifest(**data)
    except (ValidationError, TypeError) as e:
        raise PackageError(f"{source}: manifest.json is invalid: {_problems(e)}") from None


def _problems(error: Exception) -> str:
    if not isinstance(error, ValidationError):
        return str(error)
    return "; ".join(
        f"{'.'.join(map(str, x['loc']))}: {x['msg']} (got {x.get('input')!r})"[:300]
        for x in error.errors(include_url=False)
    )
