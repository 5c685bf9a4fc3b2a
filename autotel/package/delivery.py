"""What the admin's upload claims about itself, checked against the package.

`POST /update` carries `X-Update-Version` and `X-Manifest-Signature` (the
signature's bytes in base64). The zip's own `manifest.sig` is the authority; the
headers must agree with it, or the upload is not the package the admin meant.
The manifest's version is read here before the signature is checked, only to
compare it with the header; `verify_package` then checks everything for real.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
from pathlib import Path

from autotel.errors import SignatureError
from autotel.package.manifest import MANIFEST_NAME, SIGNATURE_NAME
from autotel.package.rules import DEFAULT_LIMITS, Limits
from autotel.package.zipread import open_zip, read_member


def check_delivery(
    zip_path: Path, version: str, signature_b64: str, source: str, limits: Limits = DEFAULT_LIMITS
) -> None:
    """Raises: SignatureError when a header disagrees with the package (or is malformed)."""
    try:
        claimed = base64.b64decode(signature_b64.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise SignatureError(f"{source}: X-Manifest-Signature is not base64") from None
    with open_zip(zip_path, source) as zf:
        signature = read_member(zf, SIGNATURE_NAME, limits.max_signature_bytes, source)
        raw = read_member(zf, MANIFEST_NAME, limits.max_manifest_bytes, source)
    if signature is None:
        raise SignatureError(f"{source}: no {SIGNATURE_NAME} in the zip; the package is not signed")
    if not hmac.compare_digest(claimed, signature):
        raise SignatureError(
            f"{source}: X-Manifest-Signature differs from the package's "
            f"{SIGNATURE_NAME}; the upload is not the package that was announced"
        )
    found = _unverified_version(raw)
    if found is not None and found != version.strip():
        raise SignatureError(
            f"{source}: X-Update-Version is {version!r} but the manifest says "
            f"{found!r}; the upload is not the package that was announced"
        )


def _unverified_version(raw: bytes | None) -> str | None:
    try:
        version = json.loads(raw or b"").get("version")
    except (ValueError, AttributeError):
        return None
    return version if isinstance(version, str) else None
